/**
 * Section narrative for the pivot CDA, generated in the document language (French, German, English,
 * Luxembourgish falls back to French), and the conversion of CDA narrative blocks to FHIR XHTML.
 */
import { kids, type Element, type X } from './cda/xml.ts';

type Labels = Record<string, string>;

const FR: Labels = {
  medication: 'Traitements en cours', allergies: 'Allergies et intolérances', problems: 'Problèmes de santé actifs', procedures: 'Antécédents chirurgicaux et procédures',
  devices: 'Dispositifs médicaux', immunizations: 'Vaccinations', pastIllness: 'Antécédents médicaux', functional: 'Statut fonctionnel', social: 'Mode de vie',
  pregnancy: 'Grossesse', vitals: 'Signes vitaux', results: 'Résultats d’examens', plan: 'Plan de soins', advance: 'Directives anticipées',
  name: 'Désignation', code: 'Code', date: 'Date', status: 'Statut', value: 'Valeur', dose: 'Posologie', route: 'Voie', form: 'Forme', strength: 'Dosage', since: 'Depuis', until: 'Jusqu’au',
  reaction: 'Réaction', severity: 'Sévérité', criticality: 'Criticité', agent: 'Agent', onset: 'Début', end: 'Fin', lot: 'Lot', target: 'Maladie ciblée', unit: 'Unité', reference: 'Valeurs de référence',
  noInfo: 'Aucune information disponible', noKnownMedication: 'Aucun traitement connu', noKnownAllergy: 'Aucune allergie connue', noKnownProblem: 'Aucun problème connu',
  noKnownProcedure: 'Aucune procédure connue', noKnownDevice: 'Aucun dispositif médical connu', note: 'Remarque',
};
const DE: Labels = {
  medication: 'Aktuelle Medikation', allergies: 'Allergien und Unverträglichkeiten', problems: 'Aktuelle Probleme', procedures: 'Eingriffe und Prozeduren',
  devices: 'Medizinprodukte', immunizations: 'Impfungen', pastIllness: 'Frühere Erkrankungen', functional: 'Funktionsstatus', social: 'Lebensstil',
  pregnancy: 'Schwangerschaft', vitals: 'Vitalzeichen', results: 'Untersuchungsergebnisse', plan: 'Behandlungsplan', advance: 'Patientenverfügungen',
  name: 'Bezeichnung', code: 'Code', date: 'Datum', status: 'Status', value: 'Wert', dose: 'Dosierung', route: 'Verabreichungsweg', form: 'Darreichungsform', strength: 'Stärke', since: 'Seit', until: 'Bis',
  reaction: 'Reaktion', severity: 'Schweregrad', criticality: 'Kritikalität', agent: 'Auslöser', onset: 'Beginn', end: 'Ende', lot: 'Charge', target: 'Zielkrankheit', unit: 'Einheit', reference: 'Referenzbereich',
  noInfo: 'Keine Information verfügbar', noKnownMedication: 'Keine bekannte Medikation', noKnownAllergy: 'Keine bekannten Allergien', noKnownProblem: 'Keine bekannten Probleme',
  noKnownProcedure: 'Keine bekannten Eingriffe', noKnownDevice: 'Keine bekannten Medizinprodukte', note: 'Bemerkung',
};
const EN: Labels = {
  medication: 'Medication summary', allergies: 'Allergies and intolerances', problems: 'Active problems', procedures: 'History of procedures',
  devices: 'Medical devices', immunizations: 'Immunizations', pastIllness: 'History of past illness', functional: 'Functional status', social: 'Social history',
  pregnancy: 'Pregnancy', vitals: 'Vital signs', results: 'Results', plan: 'Plan of care', advance: 'Advance directives',
  name: 'Name', code: 'Code', date: 'Date', status: 'Status', value: 'Value', dose: 'Dosage', route: 'Route', form: 'Form', strength: 'Strength', since: 'Since', until: 'Until',
  reaction: 'Reaction', severity: 'Severity', criticality: 'Criticality', agent: 'Agent', onset: 'Onset', end: 'End', lot: 'Lot', target: 'Target disease', unit: 'Unit', reference: 'Reference range',
  noInfo: 'No information available', noKnownMedication: 'No known medications', noKnownAllergy: 'No known allergies', noKnownProblem: 'No known problems',
  noKnownProcedure: 'No known procedures', noKnownDevice: 'No known devices in use', note: 'Note',
};

export function labels(lang: string): Labels {
  const p = lang.toLowerCase().split('-')[0];
  return p === 'fr' || p === 'lb' ? FR : p === 'de' ? DE : EN;
}

/** A table narrative: header labels, rows of cells; a cell may carry an ID the entries reference. */
export interface Cell {
  text: string;
  id?: string;
}

export function table(head: string[], rows: Cell[][], rowIds?: (string | undefined)[]): X {
  return {
    n: 'table',
    c: [
      { n: 'thead', c: [{ n: 'tr', c: head.map((h) => ({ n: 'th', c: [h] })) }] },
      {
        n: 'tbody',
        c: rows.map((r, i) => ({
          n: 'tr',
          a: { ID: rowIds?.[i] },
          c: r.map((cell) => ({ n: 'td', c: [cell.id ? { n: 'content', a: { ID: cell.id }, c: [cell.text] } : cell.text] })),
        })),
      },
    ],
  };
}

export function paragraph(text: string, id?: string): X {
  return { n: 'paragraph', a: { ID: id }, c: [text] };
}

/** Every ID in a CDA narrative with its text (for originalText references). */
export function narrativeIds(text: Element | undefined, into: Map<string, string>): void {
  if (!text) return;
  const walk = (e: Element) => {
    const id = e.getAttribute('ID');
    if (id) into.set(id, (e.textContent ?? '').replace(/\s+/g, ' ').trim());
    for (const k of kids(e)) walk(k);
  };
  walk(text);
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

const MAP: Record<string, string> = {
  paragraph: 'p', list: 'ul', item: 'li', table: 'table', thead: 'thead', tbody: 'tbody', tfoot: 'tfoot', tr: 'tr', td: 'td', th: 'th',
  caption: 'caption', content: 'span', br: 'br', sub: 'sub', sup: 'sup', linkHtml: 'a', col: 'col', colgroup: 'colgroup', footnote: 'span', footnoteRef: 'span',
};

/** CDA narrative block -> FHIR narrative XHTML div (IDs kept as id, styleCode as class). */
export function narrativeToXhtml(text: Element | undefined): string | undefined {
  if (!text) return undefined;
  const out: string[] = [];
  const walk = (node: Element) => {
    for (let c = node.firstChild; c; c = c.nextSibling) {
      if (c.nodeType === 3 || c.nodeType === 4) out.push(esc((c as unknown as { data: string }).data));
      else if (c.nodeType === 1) {
        const e = c as Element;
        let tag = MAP[e.localName ?? ''];
        if (e.localName === 'list' && e.getAttribute('listType') === 'ordered') tag = 'ol';
        if (!tag) {
          walk(e);
          continue;
        }
        const attrs: string[] = [];
        const id = e.getAttribute('ID');
        if (id) attrs.push(` id="${esc(id)}"`);
        const sc = e.getAttribute('styleCode');
        if (sc) attrs.push(` class="${esc(sc)}"`);
        if (tag === 'a' && e.getAttribute('href') && /^(https?:|#|mailto:)/.test(e.getAttribute('href')!)) attrs.push(` href="${esc(e.getAttribute('href')!)}"`);
        for (const a of ['colspan', 'rowspan']) if (e.getAttribute(a) && (tag === 'td' || tag === 'th')) attrs.push(` ${a}="${esc(e.getAttribute(a)!)}"`);
        if (tag === 'br') {
          out.push('<br/>');
          continue;
        }
        out.push(`<${tag}${attrs.join('')}>`);
        walk(e);
        out.push(`</${tag}>`);
      }
    }
  };
  walk(text);
  const body = out.join('').trim();
  return `<div xmlns="http://www.w3.org/1999/xhtml">${body || '<p/>'}</div>`;
}
