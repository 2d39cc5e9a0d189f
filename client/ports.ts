// The client's ports: what it takes from its environment, so that the same code runs in Node and in
// a browser. The Clock port is shared with the server (shared/clock.ts).

import type { Clock } from '../shared/clock.js';

export type { Clock, TimerHandle } from '../shared/clock.js';

/** The real clock (Date.now and the global timers), the default. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};

// Handlers declared with method syntax are checked bivariantly, so both the browser's WebSocket
// and the `ws` package (whose event types differ in detail) fit this interface.
type Handler<E> = { bivarianceHack(event: E): void }['bivarianceHack'];

/** The part of the WebSocket API the client uses: the browser's global and `ws` both provide it. */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: Handler<unknown> | null;
  onmessage: Handler<{ data: unknown }> | null;
  onclose: Handler<{ code: number; reason: string }> | null;
  onerror: Handler<unknown> | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}
export type WebSocketConstructorLike = new (url: string, protocols: string[]) => WebSocketLike;

/** `WebSocket.OPEN`: the same in browsers and in `ws`. */
export const WS_OPEN = 1;
