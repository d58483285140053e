// SPDX-License-Identifier: GPL-2.0
/*
 * klp_test_stall_unload - a livepatch of klp_stall_target's klp_stall_wait() whose *unload*
 * stalls (klp_test_stall is the one whose load stalls).
 *
 * Its klp_stall_wait() does what the original does: it sleeps in a loop until the kernel thread
 * is told to stop. Loaded while klp_stall_target is not, it goes live at once (no object of it
 * is in the kernel yet). When klp_stall_target is loaded afterwards, the kernel patches it before
 * its init runs, so klp_stall_thread spends its whole life inside this module's function, and a
 * disable transition can never finish: a task switches back to the old code only when no
 * to-be-unpatched function is on its stack. Reversing the transition (what the agent does after
 * its timeout) completes at once. Unloading klp_stall_target (kthread_stop) ends the loop and
 * releases the stall.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/kthread.h>
#include <linux/livepatch.h>
#include <linux/sched.h>

static int livepatch_klp_stall_wait(void)
{
	int rounds = 0;

	while (!kthread_should_stop()) {
		schedule_timeout_interruptible(HZ / 10);
		rounds++;
	}
	return rounds;
}

static struct klp_func funcs[] = {
	{
		.old_name = "klp_stall_wait",
		.new_func = livepatch_klp_stall_wait,
	}, { }
};

static struct klp_object objs[] = {
	{
		.name = "klp_stall_target",
		.funcs = funcs,
	}, { }
};

static struct klp_patch patch = {
	.mod = THIS_MODULE,
	.objs = objs,
};

static int klp_test_stall_unload_init(void)
{
	return klp_enable_patch(&patch);
}

static void klp_test_stall_unload_exit(void)
{
}

module_init(klp_test_stall_unload_init);
module_exit(klp_test_stall_unload_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kpatch-operator test livepatch whose unload stalls on klp_stall_thread");
MODULE_INFO(livepatch, "Y");
