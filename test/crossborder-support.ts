/**
 * Test helpers for the cross-border module: the coded content of a CDA document as multisets, to compare a
 * source pivot with the pivot regenerated after CDA -> FHIR -> CDA.
 */
import { parseXml, type Element } from '../src/crossborder/cda/xml.ts';
import { fhirToTs, tsToFhir } from '../src/crossborder/dates.ts';

export interface CodedContent {
  codes: Map<string, number>;
  quantities: Map<string, number>;
  dates: Set<string>;
}

const CODE_SYSTEM_ALIASES: Record<string, string> = { '2.16.840.1.113883.6.3': '1.3.6.1.4.1.12559.11.10.1.3.1.44.2' };

/** TS -> the form it has after a trip through FHIR (a time without zone gets +0000, seconds are filled in). */
export function normalTs(v: string): string {
  return fhirToTs(tsToFhir(v)) ?? v;
}

function inc(m: Map<string, number>, k: string) {
  m.set(k, (m.get(k) ?? 0) + 1);
}

/**
 * Codes (code|codeSystem), quantities (value|unit) and dates of the clinical entries and of the patient
 * (recordTarget). Structural codes the pivot fixes (templates' act codes) are counted too.
 */
export function codedContent(xml: string | Element, opts: { skip?: (el: Element) => boolean } = {}): CodedContent {
  const root = typeof xml === 'string' ? parseXml(xml) : xml;
  const out: CodedContent = { codes: new Map(), quantities: new Map(), dates: new Set() };
  const walk = (el: Element, inBody: boolean) => {
    if (opts.skip?.(el)) return;
    const name = el.localName;
    const body = inBody || name === 'entry' || name === 'recordTarget';
    if (body) {
      const value = el.getAttribute('value');
      // A coded element and its translations count as one set: the same code under two alias OIDs of one code
      // system (ICD-10) is one code, and RIM-002 forbids writing it twice. PQ translations (PQR) are quantities.
      if (name !== 'translation' && name !== 'languageCode') {
        const keys = new Set<string>();
        const collect = (e: Element) => {
          const code = e.getAttribute('code');
          const cs = e.getAttribute('codeSystem');
          if (code && cs && !(e.localName === 'translation' && e.getAttribute('value'))) keys.add(`${code}|${CODE_SYSTEM_ALIASES[cs] ?? cs}`);
          for (let c = e.firstChild; c; c = c.nextSibling) if (c.nodeType === 1 && (c as Element).localName === 'translation') collect(c as Element);
        };
        collect(el);
        for (const k of keys) inc(out.codes, k);
      } else if (name === 'translation' && value && el.getAttribute('codeSystem') === '2.16.840.1.113883.6.8' && el.getAttribute('code')) inc(out.quantities, `${Number(value)}|${el.getAttribute('code')}`);
      const type = el.getAttributeNS('http://www.w3.org/2001/XMLSchema-instance', 'type')?.replace(/^.*:/, '');
      if (value && el.getAttribute('unit') !== null && el.getAttribute('unit') !== '') inc(out.quantities, `${Number(value)}|${el.getAttribute('unit')}`);
      else if (value && (type === 'PQ' || name === 'numerator' || name === 'denominator' || name === 'doseQuantity')) inc(out.quantities, `${Number(value)}|1`);
      if (value && /^(effectiveTime|low|high|time|birthTime|center)$/.test(name ?? '') && /^\d{4}/.test(value)) out.dates.add(normalTs(value));
      if (value && type === 'TS') out.dates.add(normalTs(value));
    }
    for (let c = el.firstChild; c; c = c.nextSibling) if (c.nodeType === 1) walk(c as Element, body);
  };
  walk(root, false);
  return out;
}

/** What `a` has that `b` lacks (multiset difference for codes and quantities, set difference for dates). */
export function missing(a: CodedContent, b: CodedContent): { codes: string[]; quantities: string[]; dates: string[] } {
  const diff = (x: Map<string, number>, y: Map<string, number>) => [...x].filter(([k, n]) => (y.get(k) ?? 0) < n).map(([k, n]) => `${k} x${n - (y.get(k) ?? 0)}`);
  return { codes: diff(a.codes, b.codes), quantities: diff(a.quantities, b.quantities), dates: [...a.dates].filter((d) => !b.dates.has(d)) };
}
