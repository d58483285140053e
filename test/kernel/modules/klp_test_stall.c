// SPDX-License-Identifier: GPL-2.0
/*
 * klp_test_stall - a livepatch of klp_stall_target's klp_stall_wait(). The target's kernel thread
 * sleeps inside that function forever, so this patch's transition stalls for real; the agent must
 * reverse it and report TransitionStalled naming klp_stall_thread.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/livepatch.h>

static int livepatch_klp_stall_wait(void)
{
	return 0;
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

static int klp_test_stall_init(void)
{
	return klp_enable_patch(&patch);
}

static void klp_test_stall_exit(void)
{
}

module_init(klp_test_stall_init);
module_exit(klp_test_stall_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kpatch-operator test livepatch whose transition stalls on klp_stall_thread");
MODULE_INFO(livepatch, "Y");
