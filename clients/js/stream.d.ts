/** The five levels, lowest first (the stream's `level=` filter is a minimum). */
export declare const LEVELS: readonly ["debug", "info", "success", "warn", "error"];
export type Level = (typeof LEVELS)[number];

/** A log as the gateway stores it: unknown extra fields are kept. */
export interface LogRecord {
  timestamp: string;
  agentType: string;
  level: Level;
  message: string;
  metadata: Record<string, unknown>;
  [field: string]: unknown;
}

export type StreamState = "idle" | "connecting" | "live" | "reconnecting" | "closed";

/** What RoomStream dispatches: CustomEvents with these `detail`s. */
export interface RoomStreamEventMap {
  state: CustomEvent<{ state: StreamState; reason: string }>;
  connected: CustomEvent<{ roomId: string; timestamp: string; recovered: boolean; heartbeatMs?: number }>;
  /** `id` is null for a log from a plain Redis PUBLISH delivered live without one. */
  log: CustomEvent<{ id: string | null; log: LogRecord }>;
  gap: CustomEvent<{ after: string; resumedFrom: string }>;
  heartbeat: CustomEvent<{ timestamp: string }>;
  unavailable: CustomEvent<{ reason: string; retryMs: number }>;
  duplicate: CustomEvent<{ id: string }>;
}

/** The part of an EventSource that RoomStream uses (the browser's, or npm's `eventsource`). */
export interface EventSourceLike {
  readonly readyState: number;
  addEventListener(type: string, listener: (event: MessageEvent) => void): void;
  close(): void;
}

export interface RoomStreamOptions {
  room: string;
  /** Sent as `?access_token=`; without it the cookie is used. */
  token?: string;
  /** The gateway's base URL; required outside a browser page. */
  server?: string;
  /** Recent logs to load on open (`?history=N`), default 100. */
  history?: number;
  /** Default: true when no token is given (the cookie). */
  withCredentials?: boolean;
  /** The EventSource class; default the global one (Node has none: npm's `eventsource`). */
  EventSource?: new (url: string, init?: Record<string, unknown>) => EventSourceLike;
  /** Used to ask the gateway why a stream was refused; default the global fetch. */
  fetch?: typeof fetch;
  /** More options for the EventSource constructor (e.g. `fetch` for npm's `eventsource`). */
  eventSourceInit?: Record<string, unknown>;
}

/** Compare two stream ids ("<ms>-<seq>"); null when either is not one. */
export declare function compareIds(a: string, b: string): number | null;
/** The gateway base URL: `server` when given, else the directory of the page. */
export declare function gatewayBase(server?: string): URL;

/**
 * One room's log stream over EventSource: resumes with `Last-Event-ID` after any interruption,
 * retries transient refusals (`event: unavailable`, network errors) and stops for good on
 * final ones (400/401/403/404), with `reason` saying why.
 */
export declare class RoomStream extends EventTarget {
  constructor(options: RoomStreamOptions);
  readonly room: string;
  readonly state: StreamState;
  /** Why the stream is in its state (e.g. "HTTP 403: …" when closed). */
  readonly reason: string;
  /** The id of the newest log received, where a resume starts. */
  readonly lastEventId: string | null;
  /** The stream URL (with `lastEventId=` when resuming, else `history=`). */
  url(resumeAfter?: string | null, options?: { replay?: boolean }): string;
  start(): this;
  /** Close for good. */
  close(reason?: string): void;
  addEventListener<K extends keyof RoomStreamEventMap>(
    type: K,
    listener: (event: RoomStreamEventMap[K]) => void,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions,
  ): void;
  removeEventListener<K extends keyof RoomStreamEventMap>(
    type: K,
    listener: (event: RoomStreamEventMap[K]) => void,
    options?: boolean | EventListenerOptions,
  ): void;
  removeEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | EventListenerOptions,
  ): void;
}
