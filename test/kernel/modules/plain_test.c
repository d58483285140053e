// SPDX-License-Identifier: GPL-2.0
/*
 * plain_test - an ordinary module that is not a livepatch (no livepatch=Y in .modinfo).
 * The agent must refuse it with NotALivepatch and never load it.
 */
#include <linux/module.h>
#include <linux/kernel.h>

static int __init plain_test_init(void)
{
	pr_info("plain_test loaded\n");
	return 0;
}

static void __exit plain_test_exit(void)
{
}

module_init(plain_test_init);
module_exit(plain_test_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kpatch-operator test: a plain module, not a livepatch");
