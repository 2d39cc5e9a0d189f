import { Type, type Static } from '@sinclair/typebox';
import { Identifier, MessageId, Millis, Precedence } from './schemas.js';
import { Rung } from './frames.js';

/**
 * `GET /v1/status` (shared/PROTOCOL.md "Deadlines and link test"): a party's own view of its open
 * deadlines and of the link tests, for `hotline status` and the consoles.
 */

/** One open deadline. `remainingMs` is negative once overdue. */
export const StatusDeadline = Type.Object(
  {
    messageId: MessageId,
    from: Identifier,
    to: Identifier,
    precedence: Precedence,
    rung: Rung,
    acceptedAt: Millis,
    dueAt: Millis,
    remainingMs: Type.Integer(),
    overdue: Type.Boolean(),
    /** Escalation level reached so far (0: not missed yet). */
    level: Type.Integer({ minimum: 0 }),
  },
  { additionalProperties: false },
);
export type StatusDeadline = Static<typeof StatusDeadline>;

export const LinkTestResult = Type.Object(
  {
    messageId: MessageId,
    sentAt: Millis,
    ok: Type.Boolean(),
    answeredAt: Type.Optional(Millis),
    roundTripMs: Type.Optional(Millis),
    reason: Type.Optional(Type.String({ maxLength: 200 })),
    at: Millis,
  },
  { additionalProperties: false },
);
export type LinkTestResult = Static<typeof LinkTestResult>;

/** The link-test state of one ordered pair of parties (`from` is the tester's party). */
export const LinkPairStatus = Type.Object(
  {
    from: Identifier,
    to: Identifier,
    status: Type.Union([Type.Literal('unknown'), Type.Literal('up'), Type.Literal('down')]),
    /** When the status last changed. */
    since: Type.Optional(Millis),
    last: Type.Optional(LinkTestResult),
  },
  { additionalProperties: false },
);
export type LinkPairStatus = Static<typeof LinkPairStatus>;

/** The relay-to-relay link from this party's relay to a peer's (two-relay deployments). */
export const RelayLinkStatus = Type.Object(
  {
    peer: Identifier,
    status: Type.Union([Type.Literal('unknown'), Type.Literal('up'), Type.Literal('down')]),
    /** When the status last changed. */
    since: Type.Optional(Millis),
    /** Why it is down. */
    reason: Type.Optional(Type.String({ maxLength: 200 })),
  },
  { additionalProperties: false },
);
export type RelayLinkStatus = Static<typeof RelayLinkStatus>;

export const StatusResponse = Type.Object(
  {
    party: Identifier,
    now: Millis,
    /** Messages to this party whose rung is not reached yet, by due time. */
    waiting: Type.Array(StatusDeadline),
    /** Messages this party sent whose rung the addressee has not reached yet, by due time. */
    sent: Type.Array(StatusDeadline),
    /** Every ordered pair of parties this party is in. */
    links: Type.Array(LinkPairStatus),
    /** A party's own relay only: its link to each peer relay. */
    relayLinks: Type.Optional(Type.Array(RelayLinkStatus)),
  },
  { additionalProperties: false },
);
export type StatusResponse = Static<typeof StatusResponse>;
