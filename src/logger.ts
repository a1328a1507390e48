/**
 * The structured logger (pino, JSON lines on stdout). What is logged: request method, path, status and
 * duration, lifecycle events and errors. What is never logged: query strings, bodies, resources, tokens.
 */
import { pino, type Logger } from 'pino';
import type { LogLevel } from './config.ts';

export function createLogger(level: LogLevel): Logger {
  return pino({ level, base: { service: 'dsp-fhir-server' }, redact: ['req.headers.authorization'] });
}
export type { Logger };
