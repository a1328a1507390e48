/** FHIR date/dateTime/instant <-> HL7 v3 TS (yyyyMMddHHmmss[.fff]+zzzz), precision kept both ways. */

export function fhirToTs(v: string | undefined): string | undefined {
  if (!v) return undefined;
  const m = /^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$/.exec(v.trim());
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s, frac, tz] = m;
  let out = y! + (mo ?? '') + (d ?? '');
  if (h) out += h + mi + (s ?? '') + (s && frac ? frac : '');
  if (h && tz) out += tz === 'Z' ? '+0000' : tz.replace(':', '');
  return out;
}

export function tsToFhir(v: string | undefined): string | undefined {
  if (!v) return undefined;
  const m = /^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\.\d+)?([+-]\d{4})?$/.exec(v.trim());
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s, frac, tz] = m;
  let out = y!;
  if (mo) out += `-${mo}`;
  if (mo && d) out += `-${d}`;
  if (d && h) {
    // FHIR needs minutes and seconds with a time, and a zone: supply what the TS leaves out.
    out += `T${h}:${mi ?? '00'}:${s ?? '00'}${s && frac ? frac : ''}`;
    out += tz ? `${tz.slice(0, 3)}:${tz.slice(3)}` : 'Z';
  }
  return out;
}

/** The TS for a FHIR value, as a FHIR value again (to compare dates across a round trip). */
export function tsKey(v: string | undefined): string | undefined {
  return v;
}
