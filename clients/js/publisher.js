// Publisher: POST logs to a roomlogs gateway from Node (18+), safe to retry.
//
//   const publisher = new Publisher({ url: "http://gateway:8080", token });
//   const id = await publisher.emit("demo", "hello", { agentType: "story", level: "info" });
//
// The HTTP side of the Python `service.publisher.Publisher`, with the same rules: every call
// sends one fresh `Idempotency-Key` and reuses it on each of its retries, so an answer lost on
// the way back (a load balancer's 502 while a gateway restarts) is retried without storing the
// logs twice. 502/503/504 and network errors (timeouts included) are retried with jittered
// exponential backoff; any other refusal (400/401/403/404/413/422) is final at once and thrown
// as a `PublishError` carrying the gateway's JSON `{error, detail}`.

// Answers after which a retry with the same key is safe and may succeed: the load balancer
// found no gateway (502/504), or the gateway could not store the logs now (503).
const RETRY_STATUSES = new Set([502, 503, 504]);
const ROOM_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** The logs were not stored, or it is not known whether they were; `message` says why. */
export class PublishError extends Error {
  constructor(message, { status = null, error = null, detail = null, key = null, attempts = 0 } = {}) {
    super(message);
    this.name = "PublishError";
    this.status = status; // the last HTTP status, null after a network error
    this.error = error; // the gateway's error code, e.g. "room_not_allowed"
    this.detail = detail; // the gateway's explanation
    // The Idempotency-Key of the attempts when the outcome is unknown (retries used up): the
    // history, or a POST of the same body with this key, tells whether the logs were stored.
    this.key = key;
    this.attempts = attempts;
  }
}

async function newKey() {
  if (globalThis.crypto?.randomUUID) return globalThis.crypto.randomUUID();
  const { randomUUID } = await import("node:crypto"); // Node 18 has no global crypto
  return randomUUID();
}

async function readRefusal(response) {
  const text = await response.text().catch(() => "");
  try {
    const body = JSON.parse(text);
    if (body && typeof body.error === "string") {
      return { error: body.error, detail: String(body.detail ?? ""), text: "" };
    }
  } catch {
    // not JSON: a proxy's page
  }
  return { error: null, detail: null, text: text.slice(0, 200) };
}

export class Publisher {
  /**
   * @param {object} options
   * @param {string} options.url  the gateway's base URL
   * @param {string} [options.token]  a JWT whose `publish` claim covers the rooms
   * @param {number} [options.attempts]  tries per call, retries included (default 5)
   * @param {number} [options.backoffBaseMs]  first backoff cap (default 100)
   * @param {number} [options.backoffCapMs]  largest backoff (default 2000)
   * @param {number} [options.timeoutMs]  per attempt (default 10000)
   * @param {Function} [options.fetch]  default: the global fetch
   */
  constructor({
    url,
    token = "",
    attempts = 5,
    backoffBaseMs = 100,
    backoffCapMs = 2000,
    timeoutMs = 10000,
    fetch: fetchFn,
  } = {}) {
    if (!url) throw new Error("url is required");
    this.url = url.replace(/\/+$/, "");
    this.token = token;
    this.attempts = Math.max(1, Math.floor(attempts));
    this.backoffBaseMs = backoffBaseMs;
    this.backoffCapMs = backoffCapMs;
    this.timeoutMs = timeoutMs;
    this.fetch = (...args) => (fetchFn ?? globalThis.fetch)(...args);
  }

  /** Publish one log; resolves to its stream id. */
  async emit(room, message, { agentType = "system", level = "info", metadata = {}, ...extra } = {}) {
    const log = { ...extra, agentType, level, message, metadata };
    return (await this.emitMany(room, [log]))[0];
  }

  /** Publish logs (at most 100, the gateway's batch limit) in order; resolves to their ids. */
  async emitMany(room, logs) {
    if (typeof room !== "string" || !ROOM_ID.test(room)) {
      throw new PublishError(`invalid room id ${JSON.stringify(room)}`);
    }
    const body = JSON.stringify(logs);
    const key = await newKey();
    const url = `${this.url}/api/v1/rooms/${room}/logs`;
    const headers = { "Content-Type": "application/json", "Idempotency-Key": key };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    let last = "";
    let lastStatus = null;
    for (let attempt = 1; attempt <= this.attempts; attempt++) {
      let response;
      try {
        response = await this.fetch(url, {
          method: "POST",
          headers,
          body,
          signal: AbortSignal.timeout(this.timeoutMs),
        });
      } catch (exc) {
        last = `http: ${exc.cause?.code || exc.cause?.message || exc.message}`;
        lastStatus = null;
      }
      if (response) {
        if (response.status === 202) return (await response.json()).ids;
        const refusal = await readRefusal(response);
        last = refusal.error
          ? `${response.status} ${refusal.error}: ${refusal.detail}`
          : `${response.status} ${refusal.text}`;
        lastStatus = response.status;
        if (!RETRY_STATUSES.has(response.status)) {
          throw new PublishError(`not stored: ${last}`, {
            status: response.status,
            error: refusal.error,
            detail: refusal.detail,
            attempts: attempt,
          });
        }
      }
      if (attempt < this.attempts) await sleep(this.backoff(attempt));
    }
    throw new PublishError(
      `not known to be stored after ${this.attempts} attempts with one Idempotency-Key (${last})`,
      { status: lastStatus, key, attempts: this.attempts },
    );
  }

  /** Full jitter, as redis-py's ExponentialWithJitterBackoff that the Python Publisher uses. */
  backoff(failures) {
    return Math.random() * Math.min(this.backoffCapMs, this.backoffBaseMs * 2 ** failures);
  }
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
