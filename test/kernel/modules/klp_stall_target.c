// SPDX-License-Identifier: GPL-2.0
/*
 * klp_stall_target - a plain module whose kernel thread ("klp_stall_thread") spends its whole life
 * inside klp_stall_wait(). A livepatch of klp_stall_wait() (klp_test_stall) can therefore never
 * finish its transition: a kernel thread only switches to the new code when its stack does not
 * contain a patched function, and this one always does. Waking it (what the kernel does to
 * stragglers after 15 s) only sends it around the loop inside the same function.
 */
#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/kthread.h>
#include <linux/sched.h>

static struct task_struct *stall_thread;

/* Global and noinline/noclone so the livepatch finds it by name in this module's symbols. */
int __attribute__((__noinline__, __noclone__)) klp_stall_wait(void);
int __attribute__((__noinline__, __noclone__)) klp_stall_wait(void)
{
	int rounds = 0;

	while (!kthread_should_stop()) {
		schedule_timeout_interruptible(HZ / 10);
		rounds++;
	}
	return rounds;
}

static int klp_stall_fn(void *data)
{
	int rounds = klp_stall_wait();

	pr_info("klp_stall_target: thread stopping after %d rounds\n", rounds);
	return 0;
}

static int __init klp_stall_target_init(void)
{
	stall_thread = kthread_run(klp_stall_fn, NULL, "klp_stall_thread");
	return PTR_ERR_OR_ZERO(stall_thread);
}

static void __exit klp_stall_target_exit(void)
{
	kthread_stop(stall_thread);
}

module_init(klp_stall_target_init);
module_exit(klp_stall_target_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kpatch-operator test: a kernel thread that never leaves klp_stall_wait()");
