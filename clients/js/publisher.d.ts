import type { Level } from "./stream.js";

export interface PublisherOptions {
  /** The gateway's base URL, e.g. "http://roomlogs:8080". */
  url: string;
  /** A JWT whose `publish` claim covers the rooms. */
  token?: string;
  /** Tries per call, retries included (default 5). */
  attempts?: number;
  /** The first backoff's upper bound in ms (default 100); it doubles per failure. */
  backoffBaseMs?: number;
  /** The largest backoff in ms (default 2000). */
  backoffCapMs?: number;
  /** Per attempt, in ms (default 10000); a timeout is retried like a network error. */
  timeoutMs?: number;
  fetch?: typeof fetch;
}

export interface EmitOptions {
  agentType?: string;
  level?: Level;
  metadata?: Record<string, unknown>;
  /** Other fields are kept, e.g. `timestamp`. */
  [field: string]: unknown;
}

/** The logs were not stored, or (`key` set) it is not known whether they were. */
export declare class PublishError extends Error {
  readonly name: "PublishError";
  /** The last HTTP status; null after a network error or before any request. */
  readonly status: number | null;
  /** The gateway's error code of a final refusal, e.g. "room_not_allowed". */
  readonly error: string | null;
  readonly detail: string | null;
  /** The Idempotency-Key of the attempts when the retries were used up. */
  readonly key: string | null;
  readonly attempts: number;
}

export declare class Publisher {
  constructor(options: PublisherOptions);
  /** Publish one log; resolves to its stream id. */
  emit(room: string, message: string, options?: EmitOptions): Promise<string>;
  /** Publish logs (at most 100) in order; resolves to their ids. */
  emitMany(room: string, logs: ReadonlyArray<Record<string, unknown>>): Promise<string[]>;
}
