/** Types for prompts.mjs. */
export declare const CHAT_PROMPTS: readonly string[];
