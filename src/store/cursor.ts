/** Opaque paging cursors: base64url JSON. A cursor that does not decode is a client error. */
import { badRequest } from '../fhir/outcome.ts';

export function encodeCursor(value: unknown): string {
  return Buffer.from(JSON.stringify(value), 'utf8').toString('base64url');
}

export function decodeCursor<T>(cursor: string): T {
  try {
    const value = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown;
    if (value === null || typeof value !== 'object') throw new Error('not an object');
    return value as T;
  } catch {
    throw badRequest('The paging cursor is invalid or has expired');
  }
}
