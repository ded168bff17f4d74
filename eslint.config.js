import js from '@eslint/js';
import tseslint from 'typescript-eslint';

// Engines are found in the registry by the manifest's format (src/runtime/registry.ts), never
// constructed by callers: only src/runtime (and the tests of the engines themselves) may import an
// engine's folder, and within src/ only src/runtime may import onnxruntime.
const onnxEngineImport = {
  group: ['**/runtime/onnx', '**/runtime/onnx/**', '**/runtime/llm', '**/runtime/llm/**'],
  message:
    'ask the engine registry (defaultEngines() or an injected Engines, src/runtime/index.ts) instead of importing an engine (the LLM re-check is exported there too)',
};

export default tseslint.config(
  {
    ignores: [
      'dist/',
      'node_modules/',
      'examples/models/build/',
      'src/chain/artifacts/',
      'coverage/',
      'bench/results/',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      globals: { process: 'readonly', console: 'readonly', Buffer: 'readonly', URL: 'readonly' },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
    },
  },
  {
    // src/chain calls contracts through their `as const` ABIs, so a wrong function name or
    // argument fails to compile; a cast to `never` or an `unknown[]` argument list would let it
    // through again (test/chain/lint-rule.test.ts proves the rule fires).
    files: ['src/chain/**/*.ts'],
    rules: {
      'no-restricted-syntax': [
        'error',
        {
          selector: 'TSAsExpression > TSNeverKeyword',
          message: 'No `as never` in src/chain: type the call by its ABI (viem generics), not around it.',
        },
        {
          selector: 'TSArrayType > TSUnknownKeyword',
          message: 'No `unknown[]` in src/chain: type arguments by the ABI (ContractFunctionArgs).',
        },
        {
          selector:
            'TSTypeReference[typeName.name=/^(Readonly)?Array$/] > TSTypeParameterInstantiation > TSUnknownKeyword',
          message: 'No `Array<unknown>` in src/chain: type arguments by the ABI (ContractFunctionArgs).',
        },
      ],
    },
  },
  {
    files: ['**/*.ts', '**/*.mjs', '**/*.js'],
    ignores: ['src/runtime/**', 'test/runtime/**'],
    rules: { 'no-restricted-imports': ['error', { patterns: [onnxEngineImport] }] },
  },
  {
    files: ['src/**/*.ts'],
    ignores: ['src/runtime/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: [
            {
              name: 'onnxruntime-node',
              message: 'only src/runtime runs models: ask the engine registry (src/runtime/index.ts)',
            },
          ],
          patterns: [onnxEngineImport],
        },
      ],
    },
  },
);
