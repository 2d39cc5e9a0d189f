/**
 * The consoles' interface language: English, Japanese, Chinese, chosen by the user and
 * remembered (a preference, not a secret, so localStorage in clear). Message text itself is shown
 * exactly as sent, in any script. `{name}` placeholders are filled by {@link t}.
 *
 * @example
 * setLanguage('ja'); t('due_in', { t: '09:58' }) // '期限まで 09:58'
 */
import { en, type Dictionary, type MessageKey } from './i18n/en.js';
import { ja } from './i18n/ja.js';
import { zh } from './i18n/zh.js';

export type { MessageKey };

export const LANGUAGES = { en: 'English', ja: '日本語', zh: '中文' } as const;
export type Language = keyof typeof LANGUAGES;
const DICTIONARIES: Record<Language, Dictionary> = { en, ja, zh };

const PREF_KEY = 'hotline.console.lang';
let current: Language = 'en';
const listeners = new Set<() => void>();

function isLanguage(x: unknown): x is Language {
  return typeof x === 'string' && Object.hasOwn(LANGUAGES, x);
}

/** The saved choice, else the browser's language when it is one of ours, else English. */
export function initLanguage(): Language {
  let saved: string | null = null;
  try {
    saved = globalThis.localStorage?.getItem(PREF_KEY) ?? null;
  } catch {
    /* storage disabled: fall back to the browser language */
  }
  const nav = globalThis.navigator?.language?.slice(0, 2);
  current = isLanguage(saved) ? saved : isLanguage(nav) ? nav : 'en';
  if (globalThis.document) document.documentElement.lang = current;
  return current;
}

export function language(): Language {
  return current;
}

export function setLanguage(lang: Language): void {
  current = lang;
  try {
    globalThis.localStorage?.setItem(PREF_KEY, lang);
  } catch {
    /* the choice then lasts for this page only */
  }
  if (globalThis.document) document.documentElement.lang = lang;
  for (const l of listeners) l();
}

/** Be told when the language changes (to re-render). */
export function onLanguageChange(listener: () => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/** The text of `key` in the current language, placeholders filled. */
export function t(key: MessageKey, params: Record<string, string | number> = {}): string {
  const text = DICTIONARIES[current][key];
  return text.replace(/\{(\w+)\}/g, (m, name: string) => (Object.hasOwn(params, name) ? String(params[name]) : m));
}

/** For tests: every dictionary has every key and the same placeholders. */
export function dictionaries(): Readonly<Record<Language, Readonly<Record<MessageKey, string>>>> {
  return DICTIONARIES;
}
