// `npm run lint` (the static layer of `npm test`): typescript-eslint with type information.
// Errors fail the layer. Complexity and size warn past what a reader follows in one pass, and
// `--max-warnings 0` in package.json: a function or file past the budget is split before it lands.
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["node_modules/", "dist/", "**/*.js", "**/*.mjs", "**/*.cjs"] },
  {
    files: ["**/*.ts"],
    extends: [tseslint.configs.base],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    linterOptions: { reportUnusedDisableDirectives: "error" },
    rules: {
      // A promise nobody awaits or catches: a failure that vanishes, or an action racing the next.
      "@typescript-eslint/no-floating-promises": "error",
      "@typescript-eslint/no-misused-promises": ["error", { checksVoidReturn: { arguments: false, attributes: false } }],
      "@typescript-eslint/await-thenable": "error",
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_", caughtErrors: "none", destructuredArrayIgnorePattern: "^_" }],
      "no-debugger": "error",
      "prefer-const": "error",
      eqeqeq: ["error", "smart"],
      // Budgets (production code): a function a reader follows in one pass.
      complexity: ["warn", 20],
      "max-lines-per-function": ["warn", { max: 120, skipBlankLines: true, skipComments: true }],
      "max-lines": ["warn", { max: 500, skipBlankLines: true, skipComments: true }],
    },
  },
  {
    // Tests are tables and scenarios: long by nature.
    files: ["**/*.test.ts", "test/**/*.ts"],
    rules: { "max-lines-per-function": "off", "max-lines": "off", complexity: "off" },
  },
);
