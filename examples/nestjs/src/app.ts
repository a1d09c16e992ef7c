import "reflect-metadata";
import { Module, type INestApplication } from "@nestjs/common";
import { NestFactory } from "@nestjs/core";
import { RoomsController } from "./rooms.controller.js";
import { RoomsService } from "./rooms.service.js";
import { TokensService } from "./tokens.service.js";

@Module({ controllers: [RoomsController], providers: [RoomsService, TokensService] })
export class AppModule {}

export async function createApp(): Promise<INestApplication> {
  return NestFactory.create(AppModule, { logger: ["error", "warn"] });
}
