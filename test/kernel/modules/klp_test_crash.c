// SPDX-License-Identifier: GPL-2.0
/*
 * klp_test_crash - a livepatch that crashes the kernel once it is live.
 *
 * Modelled on klp_test_v1: replaces cmdline_proc_show() so that /proc/cmdline prints
 * "klp_test_crash patched". Once klp_enable_patch() has succeeded, its init schedules a delayed
 * work that calls panic() crash_delay_ms later (default 12 s: long enough under software
 * emulation for the transition to finish and the agent to report the patch live). It plays a
 * patch that is broken in a way no check before the load can see. The VM-node suite boots its
 * guest with panic=1, so the node reboots, and the agent of the new boot must not load it again.
 * Never load it anywhere that matters.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/livepatch.h>
#include <linux/seq_file.h>
#include <linux/workqueue.h>
#include <linux/jiffies.h>

static unsigned int crash_delay_ms = 12000;
module_param(crash_delay_ms, uint, 0444);
MODULE_PARM_DESC(crash_delay_ms, "milliseconds from the patch's enabling to the panic");

static void klp_test_crash_fn(struct work_struct *work)
{
	panic("klp_test_crash: the test livepatch crashes the kernel %u ms after it was enabled\n", crash_delay_ms);
}

static DECLARE_DELAYED_WORK(crash_work, klp_test_crash_fn);

static int livepatch_cmdline_proc_show(struct seq_file *m, void *v)
{
	seq_puts(m, "klp_test_crash patched\n");
	return 0;
}

static struct klp_func funcs[] = {
	{
		.old_name = "cmdline_proc_show",
		.new_func = livepatch_cmdline_proc_show,
	}, { }
};

static struct klp_object objs[] = {
	{
		/* name being NULL means vmlinux */
		.funcs = funcs,
	}, { }
};

static struct klp_patch patch = {
	.mod = THIS_MODULE,
	.objs = objs,
};

static int klp_test_crash_init(void)
{
	int ret = klp_enable_patch(&patch);

	if (ret)
		return ret;
	pr_notice("panic in %u ms\n", crash_delay_ms);
	schedule_delayed_work(&crash_work, msecs_to_jiffies(crash_delay_ms));
	return 0;
}

static void klp_test_crash_exit(void)
{
	cancel_delayed_work_sync(&crash_work);
}

module_init(klp_test_crash_init);
module_exit(klp_test_crash_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kpatch-operator test livepatch that panics the kernel a few seconds after it went live");
MODULE_INFO(livepatch, "Y");
