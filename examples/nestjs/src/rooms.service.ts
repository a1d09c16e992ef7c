import { Injectable } from "@nestjs/common";
import { Publisher, type EmitOptions } from "roomlogs-client";
import { TokensService } from "./tokens.service.js";

/** The old `RoomsService.emitLog()`, which did `redis.publish('room:{id}:logs', …)`: now a POST
 *  to the gateway, stored and live at once, retried safely with one Idempotency-Key. */
@Injectable()
export class RoomsService {
  private publisher: Publisher | null = null;
  private renewAt = 0;

  constructor(private readonly tokens: TokensService) {}

  emitLog(roomId: string, message: string, options: EmitOptions = {}): Promise<string> {
    if (this.publisher === null || Date.now() >= this.renewAt) {
      // One publish token for this service: an hour, renewed after 50 minutes.
      const token = this.tokens.mint({ publish: "*", ttlSeconds: 3600, subject: "backend" });
      this.publisher = new Publisher({ url: gatewayUrl(), token });
      this.renewAt = Date.now() + 50 * 60 * 1000;
    }
    return this.publisher.emit(roomId, message, options);
  }
}

export function gatewayUrl(): string {
  return process.env.ROOMLOGS_URL ?? "http://localhost:8080";
}
