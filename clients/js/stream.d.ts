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
  /** `rooms` on both routes (the one room on the one-room route, which also has `roomId`). */
  connected: CustomEvent<{
    rooms: string[];
    roomId?: string;
    timestamp: string;
    recovered: boolean;
    heartbeatMs?: number;
  }>;
  /** `id` is null for a log from a plain Redis PUBLISH delivered live without one; on the
   *  multi-room route it is the stream's opaque cursor. `roomId`: the log's room. */
  log: CustomEvent<{ id: string | null; roomId: string; log: LogRecord }>;
  gap: CustomEvent<{ roomId: string; after: string | null; resumedFrom: string | null }>;
  heartbeat: CustomEvent<{ timestamp: string }>;
  unavailable: CustomEvent<{ reason: string; retryMs: number }>;
  duplicate: CustomEvent<{ id: string }>;
  /** A final refusal (400/401/403/404, or a refusal this page cannot read: `status` 0). */
  refused: CustomEvent<{ status: number; error: string; detail: string; reason: string }>;
}

/** Callbacks by event name, each called with that event's `detail`. */
export type RoomStreamCallbacks = {
  [K in keyof RoomStreamEventMap]?: (detail: RoomStreamEventMap[K]["detail"]) => void;
};

/** The part of an EventSource that RoomStream uses (the browser's, or npm's `eventsource`). */
export interface EventSourceLike {
  readonly readyState: number;
  addEventListener(type: string, listener: (event: MessageEvent) => void): void;
  close(): void;
}

export interface RoomStreamOptions {
  /** One room: the one-room route, whose ids are plain stream ids. */
  room?: string;
  /** Several rooms (or one) on one stream: `GET /api/v1/logs?rooms=`, whose ids are cursors. */
  rooms?: string[] | string;
  /** The lowest level to receive (`?level=`). */
  level?: Level | "";
  /** Only this agent's logs (`?agentType=`). */
  agentType?: string;
  /** Resume after this id (one room) or cursor (several), e.g. one kept from another stream. */
  lastEventId?: string | null;
  on?: RoomStreamCallbacks;
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
/** Room ids from an array or a comma-separated string: trimmed, without empties or repeats. */
export declare function roomList(rooms: string[] | string): string[];
/** The gateway base URL: `server` when given, else the directory of the page. */
export declare function gatewayBase(server?: string): URL;

/**
 * One room's log stream, or several rooms' on one stream, over EventSource: resumes with `Last-Event-ID` after any interruption,
 * retries transient refusals (`event: unavailable`, network errors) and stops for good on
 * final ones (400/401/403/404), with `reason` saying why.
 */
export declare class RoomStream extends EventTarget {
  constructor(options: RoomStreamOptions);
  /** The first (or only) room. */
  readonly room: string;
  readonly rooms: readonly string[];
  /** True on the multi-room route. */
  readonly multi: boolean;
  readonly state: StreamState;
  /** Why the stream is in its state (e.g. "HTTP 403: …" when closed). */
  readonly reason: string;
  /** The id (one room) or cursor (several) of the newest log received, where a resume starts. */
  readonly lastEventId: string | null;
  /** The stream URL (with `lastEventId=` when resuming, else `history=`). */
  url(resumeAfter?: string | null, options?: { replay?: boolean }): string;
  start(): this;
  /** Follow these rooms on a new stream, each known room resuming from the cursor. */
  setRooms(rooms: string[] | string): this;
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
