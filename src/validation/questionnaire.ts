/**
 * QuestionnaireResponse against its Questionnaire (R4 questionnaireresponse.html and the core/SDC extensions
 * HL7's validator applies): linkIds, item nesting, required items, answer counts (repeats, minOccurs,
 * maxOccurs), answer types per item type, answerOption and answerValueSet membership, exclusive options,
 * minValue/maxValue (and SDC min/maxQuantity), maxDecimalPlaces, maxLength/minLength, regex, attachment
 * mimeType/maxSize, reference target types, quantity unitOption/unitValueSet.
 *
 * The Questionnaire is found by canonical URL in the package registry (profiles, packages, resources added in
 * code) or among the response's contained resources. Items with enableWhen are not required (their
 * conditions are not evaluated).
 */
import type { Issue, IssueCode, IssueSeverity } from '../fhir/outcome.ts';
import type { PackageRegistry } from '../packages/registry.ts';
import type { BindingChecker } from './bindings.ts';
import { checkLimit, compareQuantities } from './limits.ts';

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => v !== null && typeof v === 'object' && !Array.isArray(v);
const list = (v: unknown): Json[] => (Array.isArray(v) ? v.filter(isObject) : []);

const EXT = 'http://hl7.org/fhir/StructureDefinition/';
const SDC = 'http://hl7.org/fhir/uv/sdc/StructureDefinition/';

/** The answer value[x] type each item type takes (R4). */
const ANSWER_TYPES: Record<string, string[]> = {
  boolean: ['boolean'],
  decimal: ['decimal'],
  integer: ['integer'],
  date: ['date'],
  dateTime: ['dateTime'],
  time: ['time'],
  string: ['string'],
  text: ['string'],
  url: ['uri'],
  choice: ['Coding', 'string'], // HL7's validator accepts a string answer to a choice item (no option list to check it against)
  'open-choice': ['Coding', 'string'],
  attachment: ['Attachment'],
  reference: ['Reference'],
  quantity: ['Quantity'],
};

function issue(severity: IssueSeverity, code: IssueCode, path: string, message: string): Issue {
  return { severity, code, diagnostics: `${path}: ${message}`, expression: [path] };
}

function ext(item: Json, url: string): Json[] {
  return list(item.extension).filter((e) => e.url === url);
}

function extValue(e: Json | undefined): [string, unknown] | undefined {
  if (!e) return undefined;
  for (const k of Object.keys(e)) if (k.startsWith('value') && k.length > 5) return [k.slice(5), e[k]];
  return undefined;
}

/** The answer's value[x]: its type (FHIR spelling) and value. */
function answerValue(a: Json): { type: string; key: string; v: unknown } | undefined {
  for (const k of Object.keys(a)) {
    if (k.startsWith('value') && k.length > 5) {
      const t = k.slice(5);
      const type = /^[A-Z][a-z]/.test(t) && ['Boolean', 'Decimal', 'Integer', 'Date', 'DateTime', 'Time', 'String', 'Uri'].includes(t) ? t.charAt(0).toLowerCase() + t.slice(1) : t;
      return { type, key: k, v: a[k] };
    }
  }
  return undefined;
}

const showValue = (v: unknown) => (isObject(v) ? (v.system || v.code ? `${String(v.system ?? '')}#${String(v.code ?? '')}` : JSON.stringify(v)) : String(v));

function sameOption(type: string, v: unknown, option: unknown): boolean {
  if (type === 'Coding' && isObject(v) && isObject(option)) return option.code === v.code && (option.system === undefined || option.system === v.system);
  return v === option;
}

export function decodedLength(data: string): number {
  const clean = data.replace(/\s+/g, '');
  const pad = clean.endsWith('==') ? 2 : clean.endsWith('=') ? 1 : 0;
  return Math.floor((clean.length * 3) / 4) - pad;
}

export class QuestionnaireChecker {
  private readonly registry: PackageRegistry;
  private readonly bindings: BindingChecker;

  constructor(registry: PackageRegistry, bindings: BindingChecker) {
    this.registry = registry;
    this.bindings = bindings;
  }

  /** Issues of a QuestionnaireResponse (at `path`) against its Questionnaire. */
  check(qr: Json, path: string, out: Issue[]): void {
    const canonical = typeof qr.questionnaire === 'string' ? qr.questionnaire : undefined;
    if (!canonical) return;
    let q: Json | undefined;
    if (canonical.startsWith('#')) q = list(qr.contained).find((c) => c.resourceType === 'Questionnaire' && c.id === canonical.slice(1));
    else {
      q = this.registry.resolve<Json>(canonical, 'Questionnaire');
      if (!q) {
        const other = this.registry.resolve<Json>(canonical);
        if (other) {
          out.push(issue('error', 'invalid', `${path}.questionnaire`, `the canonical URL ${canonical} refers to a ${String(other.resourceType)}, not a Questionnaire`));
          return;
        }
      }
    }
    if (!q) {
      out.push(issue('warning', 'not-found', path, `the questionnaire ${canonical} is not known here, so the answers were not checked against it`));
      return;
    }
    const all = new Set<string>();
    const collect = (items: Json[]) => items.forEach((i) => (typeof i.linkId === 'string' && all.add(i.linkId), collect(list(i.item))));
    collect(list(q.item));
    this.items(list(q.item), list(qr.item), path, path, all, out);
  }

  private items(qItems: Json[], rItems: Json[], parentPath: string, rootPath: string, all: Set<string>, out: Issue[]): void {
    const byLink = new Map<string, Json>();
    for (const qi of qItems) if (typeof qi.linkId === 'string') byLink.set(qi.linkId, qi);
    const seen = new Map<string, number>();
    rItems.forEach((ri, i) => {
      const p = `${parentPath}.item[${i}]`;
      const linkId = typeof ri.linkId === 'string' ? ri.linkId : '';
      const qi = byLink.get(linkId);
      if (!qi) {
        out.push(issue('error', 'structure', rootPath, all.has(linkId) ? `the item with linkId '${linkId}' (${p}) is not at the place the questionnaire defines it` : `linkId '${linkId}' (${p}) is not found in the questionnaire`));
        return;
      }
      const n = (seen.get(linkId) ?? 0) + 1;
      seen.set(linkId, n);
      if (n > 1 && qi.repeats !== true) out.push(issue('error', 'structure', p, `only one item with linkId '${linkId}' is allowed (the questionnaire item does not repeat)`));
      this.item(qi, ri, p, rootPath, all, out);
    });
    // Required items that have no answer.
    for (const qi of qItems) {
      if (qi.required !== true || Array.isArray(qi.enableWhen)) continue;
      const answered = rItems.filter((ri) => ri.linkId === qi.linkId);
      const type = String(qi.type ?? '');
      const ok =
        type === 'group' ? answered.some((ri) => list(ri.item).length > 0) : type === 'display' ? true : answered.some((ri) => list(ri.answer).some((a) => answerValue(a) !== undefined));
      if (!ok) {
        out.push(
          issue('error', 'required', parentPath, type === 'group' && answered.length ? `no sub-items found for the required group '${String(qi.linkId)}'` : `no answer found for the required item '${String(qi.linkId)}'`),
        );
      }
    }
  }

  private item(qi: Json, ri: Json, p: string, rootPath: string, all: Set<string>, out: Issue[]): void {
    const type = String(qi.type ?? '');
    const answers = list(ri.answer);
    if (type === 'display') {
      if (answers.length || list(ri.item).length) out.push(issue('error', 'structure', p, `items of type 'display' cannot have answers or items`));
      return;
    }
    if (type === 'group' || type === 'question') {
      if (answers.length) out.push(issue('error', 'structure', p, `items of type '${type}' cannot have answers`));
      for (const a of answers) this.items(list(qi.item), list(a.item), p, rootPath, all, out);
      this.items(list(qi.item), list(ri.item), p, rootPath, all, out);
      return;
    }
    // Answer counts.
    const minOccurs = extValue(ext(qi, EXT + 'questionnaire-minOccurs')[0])?.[1];
    const maxOccurs = extValue(ext(qi, EXT + 'questionnaire-maxOccurs')[0])?.[1];
    if (typeof minOccurs === 'number' && answers.length < minOccurs) out.push(issue('error', 'structure', p, `at least ${minOccurs} answers are required, found ${answers.length}`));
    if (typeof maxOccurs === 'number' && answers.length > maxOccurs) out.push(issue('error', 'structure', p, `at most ${maxOccurs} answers are allowed, found ${answers.length}`));
    if (qi.repeats !== true && answers.length > 1) out.push(issue('error', 'structure', p, `only one answer is allowed (the questionnaire item '${String(qi.linkId)}' does not repeat), found ${answers.length}`));
    const exclusive = list(qi.answerOption).filter((o) => ext(o, EXT + 'questionnaire-optionExclusive').some((e) => e.valueBoolean === true));
    answers.forEach((a, j) => {
      const ap = `${p}.answer[${j}]`;
      const av = answerValue(a);
      if (av) {
        const allowed = ANSWER_TYPES[type];
        const vp = `${ap}.value.ofType(${av.type})`;
        if (allowed && !allowed.includes(av.type)) out.push(issue('error', 'structure', vp, `an answer to a '${type}' item must be of type ${allowed.join(' or ')}, not ${av.type}`));
        else this.answer(qi, type, av, vp, ap, out);
        if (exclusive.length && answers.length > 1 && exclusive.some((o) => { const ov = extValue(o); return ov !== undefined && sameOption(av.type, av.v, ov[1]); })) {
          out.push(issue('error', 'structure', ap, `the answer ${showValue(av.v)} is an exclusive option: no other answer may be selected with it`));
        }
      }
      this.items(list(qi.item), list(a.item), ap, rootPath, all, out);
    });
    if (list(ri.item).length) this.items(list(qi.item), list(ri.item), p, rootPath, all, out);
  }

  private answer(qi: Json, type: string, av: { type: string; v: unknown }, vp: string, ap: string, out: Issue[]): void {
    const v = av.v;
    // Options
    const options = list(qi.answerOption);
    if (options.length && !(type === 'open-choice' && av.type === 'string')) {
      const ok = options.some((o) => {
        const ov = extValue(o);
        return ov !== undefined && sameOption(av.type, v, ov[1]);
      });
      if (!ok) out.push(issue('error', 'code-invalid', vp, `the answer ${showValue(v)} is not one of the answer options of item '${String(qi.linkId)}'`));
    } else if (typeof qi.answerValueSet === 'string' && (av.type === 'Coding' || av.type === 'string')) {
      const vs = qi.answerValueSet;
      if (!vs.startsWith('#')) {
        const coding = av.type === 'Coding' && isObject(v) ? { system: v.system as string | undefined, code: v.code as string | undefined } : { code: v as string };
        if (av.type === 'string' && type === 'open-choice') {
          // free text is allowed in open-choice items
        } else {
          const r = this.bindings.checkCode(vs, coding);
          if (r.ok === false) out.push(issue('error', 'code-invalid', av.type === 'string' ? vp : ap, `the answer ${showValue(v)} is not in the value set ${vs} of item '${String(qi.linkId)}': ${r.message}`));
          else if (r.ok === 'unknown' && /not available/.test(r.message) && /value set/.test(r.message)) out.push(issue('warning', 'not-found', ap, `the value set ${vs} is not known here: the answer was not checked`));
        }
      }
    }
    // Value limits
    const limits: ['min' | 'max', Json | undefined][] = [
      ['min', ext(qi, EXT + 'minValue')[0] ?? ext(qi, SDC + 'sdc-questionnaire-minQuantity')[0]],
      ['max', ext(qi, EXT + 'maxValue')[0] ?? ext(qi, SDC + 'sdc-questionnaire-maxQuantity')[0]],
    ];
    for (const [kind, e] of limits) {
      const lv = extValue(e);
      if (!lv) continue;
      if (av.type === 'Quantity' && isObject(v) && isObject(lv[1])) {
        const formal = (q: Json) => typeof q.system === 'string' && typeof q.code === 'string';
        if (!formal(v) || !formal(lv[1])) {
          out.push(issue('error', 'value', vp, `the quantity ${showValue(v.value)} ${String(v.unit ?? v.code ?? '')} cannot be compared with the ${kind}imum ${String(lv[1].value)} ${String(lv[1].unit ?? lv[1].code ?? '')}: no formal (UCUM) units`));
          continue;
        }
        const d = compareQuantities(v, lv[1]);
        if (typeof d === 'string') out.push(issue('error', 'value', vp, `the quantity ${String(v.value)} ${String(v.code)} cannot be compared with the ${kind}imum ${String(lv[1].value)} ${String(lv[1].code)}: ${d}`));
        else if (kind === 'min' ? d < 0 : d > 0) out.push(issue('error', 'value', vp, `the quantity ${String(v.value)} ${String(v.code)} is ${kind === 'min' ? 'less than the minimum' : 'greater than the maximum'} ${String(lv[1].value)} ${String(lv[1].code)}`));
        continue;
      }
      const p = checkLimit(kind, av.type, v, lv[0], lv[1]);
      if (p) out.push(issue(p.severity, 'value', vp, p.message.replace('allowed by the profile', `allowed for item '${String(qi.linkId)}'`)));
    }
    // Decimal places
    const places = extValue(ext(qi, EXT + 'maxDecimalPlaces')[0])?.[1];
    if (typeof places === 'number' && typeof v === 'number') {
      const s = String(v);
      const dp = s.includes('e') ? 0 : s.includes('.') ? s.length - s.indexOf('.') - 1 : 0;
      if (dp > places) out.push(issue('error', 'value', vp, `the value ${s} has ${dp} decimal places, more than the ${places} allowed`));
    }
    // Lengths and format of strings
    if (typeof v === 'string' && (av.type === 'string' || av.type === 'uri')) {
      const len = [...v].length;
      if (typeof qi.maxLength === 'number' && len > qi.maxLength) out.push(issue('error', 'value', vp, `the answer is ${len} characters long, longer than the maximum length ${qi.maxLength}`));
      const minLength = extValue(ext(qi, EXT + 'minLength')[0])?.[1];
      if (typeof minLength === 'number' && len < minLength) out.push(issue('error', 'value', vp, `the answer is ${len} characters long, shorter than the minimum length ${minLength}`));
      const regex = extValue(ext(qi, EXT + 'regex')[0])?.[1];
      if (typeof regex === 'string') {
        let re: RegExp | undefined;
        try {
          re = new RegExp(`^(?:${regex})$`, 'u');
        } catch {
          re = undefined;
        }
        if (re && !re.test(v)) out.push(issue('error', 'value', vp, `the answer '${v}' does not match the regular expression ${regex}`));
      }
    }
    // Attachments
    if (av.type === 'Attachment' && isObject(v)) {
      const mimes = ext(qi, EXT + 'mimeType').map((e) => e.valueCode).filter((x): x is string => typeof x === 'string');
      if (mimes.length && typeof v.contentType === 'string' && !mimes.includes(v.contentType)) out.push(issue('error', 'value', ap, `the mime type ${v.contentType} is not allowed for this answer (allowed: ${mimes.join(', ')})`));
      const maxSize = extValue(ext(qi, EXT + 'maxSize')[0])?.[1];
      const size = typeof v.data === 'string' ? decodedLength(v.data) : typeof v.size === 'number' ? v.size : undefined;
      if (typeof maxSize === 'number' && size !== undefined && size > maxSize) out.push(issue('error', 'value', ap, `the attachment is too large: ${size} bytes, at most ${maxSize} allowed`));
    }
    // References
    if (av.type === 'Reference' && isObject(v) && typeof v.reference === 'string') {
      const ref = v.reference;
      if (/\s/.test(ref)) out.push(issue('error', 'value', vp, `the reference '${ref}' is not a valid reference`));
      const m = /(?:^|\/)([A-Za-z]+)\/[A-Za-z0-9\-.]{1,64}(?:\/_history\/[A-Za-z0-9\-.]{1,64})?$/.exec(ref);
      if (m && !ref.startsWith('#') && !ref.startsWith('urn:')) {
        const rt = m[1]!;
        const known = this.registry.structureDefinition(EXT + rt) as Json | undefined;
        if (!known || known.kind !== 'resource') out.push(issue('error', 'value', vp, `the resource type ${rt} in the reference ${ref} is not a FHIR resource type`));
        else {
          const allowed = ext(qi, EXT + 'questionnaire-referenceResource').map((e) => e.valueCode).filter((x): x is string => typeof x === 'string');
          if (allowed.length && !allowed.includes(rt) && !allowed.includes('Resource')) out.push(issue('error', 'value', vp, `the resource type ${rt} is not allowed here (allowed: ${allowed.join(', ')})`));
        }
      }
    }
    // Quantity units
    if (av.type === 'Quantity' && isObject(v)) {
      const units = ext(qi, EXT + 'questionnaire-unitOption').map((e) => e.valueCoding).filter(isObject);
      if (units.length && !units.some((u) => u.code === v.code && (u.system ?? '') === (v.system ?? ''))) {
        out.push(issue('error', 'code-invalid', vp, `the unit ${String(v.system ?? '')}#${String(v.code ?? v.unit ?? '')} is not one of the unit options (${units.map((u) => `${String(u.system ?? '')}#${String(u.code)}`).join(', ')})`));
      }
      const unitVs = extValue(ext(qi, EXT + 'questionnaire-unitValueSet')[0])?.[1];
      if (typeof unitVs === 'string') {
        const r = typeof v.code === 'string' ? this.bindings.checkCode(unitVs, { system: v.system as string | undefined, code: v.code }) : ({ ok: false, message: 'the quantity has no unit code' } as const);
        if (r.ok === false) out.push(issue('error', 'code-invalid', vp, `the unit of the quantity is not in the unit value set ${unitVs}: ${r.message}`));
      }
    }
  }
}
