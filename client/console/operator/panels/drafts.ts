import type { RecordStore } from '../../../storage/kv.js';
import type { UnlockedKey } from '../../key-store.js';
import { SealedNotes } from '../../common/shell.js';

/** What the compose form holds: kept sealed per device, so that a reload or a crash loses no draft. */
export interface Draft {
  to?: string;
  precedence?: string;
  subject?: string;
  body?: string;
  lang?: string;
  exercise?: boolean;
  /** The classification and caveats picked (codes of the agreement's labels). */
  labelClass?: string;
  labelCaveats?: string[];
}

/** Typing is stored at most this often. */
const SAVE_AFTER_MS = 300;

/** The compose draft of one device (see {@link openDrafts}). */
export interface Drafts {
  /** The draft stored when the console opened (undefined: none, or it was sent). */
  readonly initial: Draft | undefined;
  /** Store `draft` shortly (the last of a burst of keystrokes wins); `stored` is called once it is. */
  save(draft: Draft, stored?: () => void): void;
  /** Forget the draft (it was sent): nothing of it stays stored. */
  clear(): Promise<void>;
  /** Store a pending save now (the page is being hidden or closed). */
  flush(): void;
}

/**
 * The compose draft of device `key`, stored like the console's message notes: sealed under the
 * data key (message text is never stored in clear), one record under its own scope.
 */
export async function openDrafts(kv: RecordStore, unlocked: UnlockedKey, key: string): Promise<Drafts> {
  const notes = await SealedNotes.open<Draft>(kv, unlocked.data, `draft/${key}`);
  const stored = notes.values.get('compose');
  const initial = stored && (stored.body || stored.subject) ? stored : undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let pending: { draft: Draft; stored: (() => void) | undefined } | undefined;
  const write = () => {
    clearTimeout(timer);
    timer = undefined;
    if (pending) {
      const { draft, stored } = pending;
      notes.save([['compose', draft]]).then(stored, () => undefined);
    }
    pending = undefined;
  };
  // A reload right after typing: what was typed in the last moments is stored too.
  addEventListener('pagehide', write);
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'hidden') write();
  });
  return {
    initial,
    save(draft, stored) {
      pending = { draft, stored };
      clearTimeout(timer);
      timer = setTimeout(write, SAVE_AFTER_MS);
    },
    clear() {
      clearTimeout(timer);
      timer = undefined;
      pending = undefined;
      return notes.save([['compose', {}]]);
    },
    flush: write,
  };
}
