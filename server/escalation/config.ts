import { readFileSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { Type, type Static } from '@sinclair/typebox';
import { HotlineError } from '../../shared/errors.js';
import { Identifier, Precedence } from '../../shared/protocol/schemas.js';
import { checkerOf, schemaError } from '../../shared/protocol/validate.js';
import type { HotlineEvent } from '../../shared/protocol/frames.js';

/**
 * The webhooks file (`--webhooks FILE`, HOTLINE_WEBHOOKS; docs/escalation.md): where a party's
 * relay sends its alarms beyond the console. Secrets are never in this file: each hook names a file
 * that holds its HMAC secret (or SMTP credentials), read once at start and never logged.
 */

/** Every event type a hook may ask for. */
export const ESCALATION_EVENTS = ['deadline.missed', 'deadline.met', 'deadline.closed', 'link.down', 'link.up', 'link.test', 'audit.alarm', 'message.relayed'] as const satisfies readonly HotlineEvent['type'][];
export type EscalationEventType = (typeof ESCALATION_EVENTS)[number];
/** What a hook gets when it names no events: the alarms (a missed deadline, a link down, an audit alarm). */
export const DEFAULT_ESCALATION_EVENTS: readonly EscalationEventType[] = ['deadline.missed', 'link.down', 'audit.alarm'];

export const DEFAULT_RETRY = { minMs: 5_000, maxMs: 15 * 60_000, giveUpAfterMs: 24 * 3_600_000 } as const;
export const DEFAULT_HOOK_TIMEOUT_MS = 10_000;

const HookName = Type.String({ pattern: '^[a-z0-9][a-z0-9._-]{0,62}$', description: 'names the hook in log lines, the delivery id and the store' });
const Filters = {
  events: Type.Optional(Type.Array(Type.Union(ESCALATION_EVENTS.map((e) => Type.Literal(e))), { minItems: 1, uniqueItems: true })),
  /** Only events that concern this party (its deadlines, its links, its alarms). */
  party: Type.Optional(Identifier),
  /** Only deadline events of these precedences (other events pass). */
  precedences: Type.Optional(Type.Array(Precedence, { minItems: 1, uniqueItems: true })),
  timeoutMs: Type.Optional(Type.Integer({ minimum: 100, maximum: 120_000 })),
};
const FilePath = Type.String({ minLength: 1, maxLength: 4096 });

const WebhookHookFile = Type.Object(
  { name: HookName, kind: Type.Literal('webhook'), url: Type.String({ pattern: '^https?://\\S+$', maxLength: 2048 }), secretFile: FilePath, ...Filters },
  { additionalProperties: false },
);
const SmtpHookFile = Type.Object(
  {
    name: HookName,
    kind: Type.Literal('smtp'),
    host: Type.String({ minLength: 1, maxLength: 253 }),
    port: Type.Integer({ minimum: 1, maximum: 65535 }),
    /** TLS from the first byte (port 465); otherwise STARTTLS when the server offers it. */
    secure: Type.Optional(Type.Boolean()),
    /** A JSON file `{"user": "…", "pass": "…"}`; without it no SMTP AUTH. */
    authFile: Type.Optional(FilePath),
    from: Type.String({ minLength: 3, maxLength: 320 }),
    to: Type.Array(Type.String({ minLength: 3, maxLength: 320 }), { minItems: 1, maxItems: 50 }),
    ...Filters,
  },
  { additionalProperties: false },
);
export const WebhooksFile = Type.Object(
  {
    hooks: Type.Array(Type.Union([WebhookHookFile, SmtpHookFile]), { minItems: 1, maxItems: 32 }),
    retry: Type.Optional(
      Type.Object(
        {
          minMs: Type.Optional(Type.Integer({ minimum: 100, maximum: 3_600_000 })),
          maxMs: Type.Optional(Type.Integer({ minimum: 100, maximum: 24 * 3_600_000 })),
          giveUpAfterMs: Type.Optional(Type.Integer({ minimum: 60_000, maximum: 30 * 24 * 3_600_000 })),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);
export type WebhooksFile = Static<typeof WebhooksFile>;

interface HookCommon {
  name: string;
  events: readonly EscalationEventType[];
  party?: string;
  precedences?: readonly Static<typeof Precedence>[];
  timeoutMs: number;
}
export interface WebhookHook extends HookCommon {
  kind: 'webhook';
  url: string;
  /** The HMAC-SHA256 key: the secret file's bytes, trimmed. Never logged. */
  secret: Uint8Array;
}
export interface SmtpHook extends HookCommon {
  kind: 'smtp';
  host: string;
  port: number;
  secure: boolean;
  auth?: { user: string; pass: string };
  from: string;
  to: readonly string[];
}
export type Hook = WebhookHook | SmtpHook;

/** The loaded configuration: hooks with their secrets, and the retry schedule. */
export interface EscalationConfig {
  hooks: readonly Hook[];
  retry: { minMs: number; maxMs: number; giveUpAfterMs: number };
}

/** HMAC keys shorter than this are refused: a guessable key signs nothing. */
const MIN_SECRET_BYTES = 16;

/**
 * Read and check the webhooks file and the secret files it names (relative paths are taken from the
 * file's own directory). Every problem is a HotlineError: HL_ERR_ESCALATION_CONFIG_UNREADABLE (the
 * file cannot be read or is not JSON), HL_ERR_ESCALATION_CONFIG_INVALID (schema, duplicate names,
 * retry bounds), HL_ERR_ESCALATION_SECRET (a secret file unreadable, readable by others, too short).
 *
 * @example
 * const config = loadEscalationConfig('/etc/hotline/webhooks.json');
 */
export function loadEscalationConfig(path: string): EscalationConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    throw new HotlineError('HL_ERR_ESCALATION_CONFIG_UNREADABLE', `cannot read the webhooks file ${path} (HOTLINE_WEBHOOKS)`, { cause });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (cause) {
    throw new HotlineError('HL_ERR_ESCALATION_CONFIG_UNREADABLE', `the webhooks file ${path} is not JSON: ${(cause as Error).message}`, { cause });
  }
  return parseEscalationConfig(value, (file) => readSecretFile(resolve(dirname(path), file)), path);
}

/** Check a parsed webhooks file; `readSecret` reads the file a hook names (its bytes). */
export function parseEscalationConfig(value: unknown, readSecret: (file: string) => Buffer, where = 'the webhooks file'): EscalationConfig {
  const check = checkerOf(WebhooksFile);
  if (!check.Check(value)) {
    const e = schemaError(check, value, 'HL_ERR_ESCALATION_CONFIG_INVALID');
    throw new HotlineError('HL_ERR_ESCALATION_CONFIG_INVALID', `${where}: ${e.message}`, e.detail ? { detail: e.detail } : undefined);
  }
  const names = new Set<string>();
  for (const h of value.hooks) {
    if (names.has(h.name)) throw new HotlineError('HL_ERR_ESCALATION_CONFIG_INVALID', `${where}: two hooks are named "${h.name}"; each needs a name of its own`);
    names.add(h.name);
  }
  const retry = { ...DEFAULT_RETRY, ...value.retry };
  if (retry.minMs > retry.maxMs) throw new HotlineError('HL_ERR_ESCALATION_CONFIG_INVALID', `${where}: retry.minMs (${retry.minMs}) is more than retry.maxMs (${retry.maxMs})`);
  const hooks = value.hooks.map((h): Hook => {
    const common: HookCommon = {
      name: h.name,
      events: h.events ?? DEFAULT_ESCALATION_EVENTS,
      ...(h.party !== undefined ? { party: h.party } : {}),
      ...(h.precedences !== undefined ? { precedences: h.precedences } : {}),
      timeoutMs: h.timeoutMs ?? DEFAULT_HOOK_TIMEOUT_MS,
    };
    if (h.kind === 'webhook') {
      const secret = readSecret(h.secretFile);
      if (secret.length < MIN_SECRET_BYTES) throw new HotlineError('HL_ERR_ESCALATION_SECRET', `hook "${h.name}": the secret in ${h.secretFile} is shorter than ${MIN_SECRET_BYTES} bytes (make one with: openssl rand -hex 32)`);
      return { ...common, kind: 'webhook', url: h.url, secret: new Uint8Array(secret) };
    }
    const auth = h.authFile === undefined ? undefined : parseSmtpAuth(h.name, h.authFile, readSecret(h.authFile));
    return { ...common, kind: 'smtp', host: h.host, port: h.port, secure: h.secure ?? h.port === 465, ...(auth ? { auth } : {}), from: h.from, to: h.to };
  });
  return { hooks, retry };
}

function parseSmtpAuth(hook: string, file: string, bytes: Buffer): { user: string; pass: string } {
  let v: unknown;
  try {
    v = JSON.parse(bytes.toString('utf8'));
  } catch {
    v = undefined;
  }
  const o = v as { user?: unknown; pass?: unknown } | undefined;
  if (typeof o?.user !== 'string' || typeof o.pass !== 'string' || o.user === '' || o.pass === '') {
    // The file's content is never echoed: it holds a password.
    throw new HotlineError('HL_ERR_ESCALATION_SECRET', `hook "${hook}": ${file} must hold {"user": "…", "pass": "…"}`);
  }
  return { user: o.user, pass: o.pass };
}

/** A secret file's bytes (trimmed): readable, and by its owner only (mode 0600 or stricter). */
function readSecretFile(path: string): Buffer {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (cause) {
    throw new HotlineError('HL_ERR_ESCALATION_SECRET', `cannot read the secret file ${path}`, { cause });
  }
  const mode = statSync(path).mode & 0o777;
  if ((mode & 0o077) !== 0) throw new HotlineError('HL_ERR_ESCALATION_SECRET', `${path} is readable by others (mode ${mode.toString(8)}); run: chmod 600 ${path}`);
  return Buffer.from(bytes.toString('utf8').trim(), 'utf8');
}
