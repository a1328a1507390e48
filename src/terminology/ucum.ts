/**
 * UCUM through @lhncbc/ucum-lhc: unit validation and conversion. The canonical form used by quantity search
 * stays in src/search/normalize.ts (ucumCanonical) and is re-exported here so callers have one entry point.
 */
import { createRequire } from 'node:module';
export { ucumCanonical, UCUM } from '../search/normalize.ts';

interface UcumLhc {
  validateUnitString(unit: string, suggest?: boolean): { status: 'valid' | 'invalid' | 'error'; ucumCode?: string | null; unit?: { name?: string } | null; msg?: string[] };
  convertUnitTo(from: string, value: number, to: string): { status: string; toVal?: number | null; msg?: string[] };
}

let utils: UcumLhc | undefined;
function ucum(): UcumLhc {
  if (!utils) {
    const require = createRequire(import.meta.url);
    utils = (require('@lhncbc/ucum-lhc') as { UcumLhcUtils: { getInstance(): UcumLhc } }).UcumLhcUtils.getInstance();
  }
  return utils;
}

const cache = new Map<string, { valid: boolean; name?: string; message?: string }>();

/** Is `code` a valid UCUM expression (case-sensitive c/s form)? Returns its printable name when valid. */
export function ucumValidate(code: string): { valid: boolean; name?: string; message?: string } {
  let r = cache.get(code);
  if (!r) {
    try {
      const v = ucum().validateUnitString(code, false);
      const valid = v.status === 'valid' && v.ucumCode === code;
      r = { valid, ...(v.unit?.name ? { name: v.unit.name } : {}), ...(!valid ? { message: (v.msg ?? []).join('; ') || `'${code}' is not a valid UCUM unit` } : {}) };
    } catch (err) {
      r = { valid: false, message: (err as Error).message };
    }
    if (cache.size > 10_000) cache.clear();
    cache.set(code, r);
  }
  return r;
}

/** Converts `value` from one UCUM unit to another; undefined when the units are not commensurable. */
export function ucumConvert(value: number, from: string, to: string): number | undefined {
  try {
    const r = ucum().convertUnitTo(from, value, to);
    return r.status === 'succeeded' && typeof r.toVal === 'number' ? r.toVal : undefined;
  } catch {
    return undefined;
  }
}
