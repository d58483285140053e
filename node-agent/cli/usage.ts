export const USAGE = `usage: kpatch-agent [global flags] <command> [<args>]

Commands (kpatch-compatible):
  list                                 loaded and installed patch modules, taint
  status                               host preflight (blockers) and list, as one report
  info <name|file.ko>                  what a module says about itself, where it is staged and loaded
  install [-k KVER] [--sha256 HEX] <file.ko>
                                       stage the module under /var/lib/kpatch/KVER (default: running release)
  uninstall [-k KVER] <name>           remove a staged module (does not unload)
  load <name|file.ko> | load --all     load a patch and wait for its transition (--all: every module
                                       staged for the running release)
  unload <name> | unload --all         disable a patch, wait for the transition, remove the module

Simulated host (tests and demos):
  sim-host init --kernel-release R [--boot-id ID] [--sig-enforce] [--lockdown MODE] [--no-livepatch]
                [--modules-disabled] [--ftrace-disabled] [--transition-ms N] [--free-delay-ms N] [--stall] [--tainted N]
                [--replace-attribute] [--signal-attribute]
  sim-host configure [--stall|--no-stall] [--transition-ms N] [--sig-enforce|--no-sig-enforce] ...
  sim-host reboot [--kernel-release R] [--boot-id ID]
  sim-host make-module --name N --vermagic V [--replace] [--not-livepatch] [--signed] [--license L] -o FILE

Global flags:
  --host-root DIR            host filesystem root (default /, or $KPATCH_HOST_ROOT)
  --json                     machine-readable output on stdout (failures too)
  --loader auto|kmod|sim     auto: the simulated host when DIR/.kpatch-sim exists, else kmod
  --transition-timeout SEC   give up on a transition after SEC seconds and reverse it (default 75)
  --log-level LEVEL          log to stderr (default silent)

Exit codes: 0 success, 1 operation failed ("kpatch-agent: <Reason>: <message>" on stderr), 2 usage error.
`;
