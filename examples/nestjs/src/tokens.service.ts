import { Injectable } from "@nestjs/common";
import jwt from "jsonwebtoken";

export interface TokenRequest {
  rooms?: string[] | "*";
  publish?: string[] | "*";
  ttlSeconds?: number;
  subject?: string;
}

/** Tokens as the gateway reads them: HS256 with its JWT_SECRET, `exp` required, `rooms` to
 *  read and `publish` to write (lists of room ids, or "*"). */
@Injectable()
export class TokensService {
  private readonly secret = process.env.JWT_SECRET ?? "";

  mint({ rooms = [], publish = [], ttlSeconds = 900, subject }: TokenRequest): string {
    if (!this.secret) throw new Error("JWT_SECRET is not set (the gateway's secret)");
    return jwt.sign({ rooms, publish }, this.secret, {
      algorithm: "HS256",
      expiresIn: ttlSeconds,
      ...(subject ? { subject } : {}),
    });
  }
}
