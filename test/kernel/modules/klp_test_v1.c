// SPDX-License-Identifier: GPL-2.0
/*
 * klp_test_v1 - the kpatch operator's real-kernel test livepatch, version 1.
 *
 * Modelled on the kernel's samples/livepatch/livepatch-sample.c: replaces cmdline_proc_show() so
 * that /proc/cmdline prints a fixed line. The tests read /proc/cmdline to see that the patch is
 * live and that the original text comes back once it is disabled.
 *
 * Built with -DKLP_TEST_V1_REBUILT (scripts/kernel/build-modules.sh: klp_test_v1_rebuilt.ko) it
 * is another build of the same module, klp_test_v1 (another GNU build-id), whose /proc/cmdline
 * says "klp_test_v1 rebuilt": a same-named rebuild of a live patch.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/livepatch.h>
#include <linux/seq_file.h>

#ifdef KLP_TEST_V1_REBUILT
#define KLP_TEST_V1_TEXT "klp_test_v1 rebuilt\n"
#else
#define KLP_TEST_V1_TEXT "klp_test_v1 patched\n"
#endif

static int livepatch_cmdline_proc_show(struct seq_file *m, void *v)
{
	seq_puts(m, KLP_TEST_V1_TEXT);
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

static int klp_test_init(void)
{
	return klp_enable_patch(&patch);
}

static void klp_test_exit(void)
{
}

module_init(klp_test_init);
module_exit(klp_test_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kpatch-operator test livepatch v1: /proc/cmdline prints a fixed line");
MODULE_INFO(livepatch, "Y");
