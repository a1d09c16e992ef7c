import {
  BadRequestException,
  Body,
  Controller,
  Get,
  HttpCode,
  HttpException,
  Param,
  Post,
  Redirect,
  Req,
  Res,
} from "@nestjs/common";
import type { Request, Response } from "express";
import { PublishError, type EmitOptions } from "roomlogs-client";
import { RoomsService, gatewayUrl } from "./rooms.service.js";
import { TokensService } from "./tokens.service.js";

const ROOM_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const COOKIE = process.env.AUTH_COOKIE ?? "roomlogs_token"; // the gateway's AUTH_COOKIE

@Controller()
export class RoomsController {
  constructor(
    private readonly rooms: RoomsService,
    private readonly tokens: TokensService,
  ) {}

  /** A job reports progress (what used to call emitLog directly). */
  @Post("jobs/:roomId/logs")
  @HttpCode(202)
  async publish(
    @Param("roomId") roomId: string,
    @Body() body: { message?: string } & EmitOptions,
  ): Promise<{ id: string }> {
    const { message, ...options } = body;
    try {
      return { id: await this.rooms.emitLog(roomId, String(message ?? ""), options) };
    } catch (exc) {
      if (exc instanceof PublishError) {
        const status = exc.status !== null && exc.status < 500 ? exc.status : 503;
        throw new HttpException({ error: exc.error ?? "publish_failed", detail: exc.message }, status);
      }
      throw exc;
    }
  }

  /** The page asks to watch a room: a read-only token for it, in the cookie the gateway
   *  reads (and in the answer, for a gateway on another origin: `?access_token=`). */
  @Get("rooms/:roomId/viewer")
  viewer(@Param("roomId") roomId: string, @Req() req: Request, @Res({ passthrough: true }) res: Response) {
    if (!ROOM_ID.test(roomId)) throw new BadRequestException({ error: "bad_room_id" });
    // Check here that the user may watch the room.
    const token = this.tokens.mint({ rooms: [roomId], ttlSeconds: 900, subject: "user-1" });
    res.cookie(COOKIE, token, {
      httpOnly: true,
      sameSite: "lax",
      secure: req.secure,
      path: "/api/v1/",
      maxAge: 900_000,
    });
    return { token, stream: `/api/v1/rooms/${roomId}/logs` };
  }

  /** The old SSE route: the gateway serves it now. Better, route /api/v1/rooms/*\/logs to the
   *  gateway at the load balancer; this keeps clients that still call this host working. */
  @Get("api/v1/rooms/:roomId/logs")
  @Redirect(undefined, 307)
  moved(@Req() req: Request): { url: string } {
    return { url: new URL(req.originalUrl, gatewayUrl()).href };
  }
}
