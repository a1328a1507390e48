/**
 * The store-neutral search contract.
 *
 * - Index values are extracted from a resource at write time (src/search/indexer.ts) and handed to the store
 *   with the write; the store keeps them (SQLite: index tables; MongoDB: fields of the document).
 * - A search URL is parsed (src/search/parse.ts) into a SearchRequest; each store compiles it into its own
 *   query language (SQLite: src/store/sqlite/search-sql.ts; MongoDB: src/store/mongo/search-filter.ts).
 *
 * Normalisation rules are fixed here so both stores give the same answers:
 * - string values are stored folded: lower case, accents removed (NFD, combining marks dropped),
 *   whitespace collapsed; `exact` keeps the original text;
 * - date values are ranges of UTC instants [low, high] in ISO form `YYYY-MM-DDTHH:mm:ss.sssZ`, derived from
 *   the value's precision (a date "2020" covers the whole year);
 * - numbers and quantities are ranges too (the value's implicit precision), kept as JS numbers;
 * - references are kept as `Type/id` for relative and resolvable absolute references, else the full URL.
 */

export type ParamType = 'number' | 'date' | 'string' | 'token' | 'reference' | 'composite' | 'quantity' | 'uri' | 'special';

interface IndexBase {
  /** Search parameter code, e.g. `identifier`, `birthdate`, `_lastUpdated`. */
  param: string;
}

export type IndexValue =
  | (IndexBase & { type: 'string'; value: string; exact: string })
  /**
   * `text` is folded (display of a Coding, text of a CodeableConcept, type text of an Identifier).
   * `ofType` (Identifier with a type only): `typeSystem|typeCode|value`, one value per type coding.
   */
  | (IndexBase & { type: 'token'; system?: string; code?: string; text?: string; ofType?: string })
  | (IndexBase & { type: 'reference'; reference: string; targetType?: string; targetId?: string; identifierSystem?: string; identifierValue?: string })
  | (IndexBase & { type: 'date'; low: string; high: string })
  | (IndexBase & { type: 'number'; low: number; high: number; value: number })
  | (IndexBase & { type: 'quantity'; value: number; low: number; high: number; system?: string; code?: string; unit?: string; canonicalValue?: number; canonicalCode?: string })
  | (IndexBase & { type: 'uri'; value: string })
  | (IndexBase & { type: 'composite'; components: IndexValue[] })
  /** `_text` (narrative) and `_content` (whole resource): the distinct folded words (src/search/text.ts). */
  | (IndexBase & { type: 'text'; words: string[] })
  /** `near` (Location.position): WGS84 degrees. */
  | (IndexBase & { type: 'position'; latitude: number; longitude: number });

export type Prefix = 'eq' | 'ne' | 'gt' | 'lt' | 'ge' | 'le' | 'sa' | 'eb' | 'ap';

/** One value of a search parameter; several in one parameter (comma) are ORed. */
export type Predicate =
  | { type: 'string'; value: string; modifier?: 'exact' | 'contains' }
  /**
   * `system` undefined: any system; `system` '' (from `|code`): no system. `:text` puts the folded text in
   * `text`; `:of-type` puts `typeSystem|typeCode|value` in `ofType`; `:in` / `:not-in` name the value set in
   * `valueSet` and the caller expands it into `valueSetCodes` before compiling (stores reject unexpanded ones);
   * `:above` / `:below` (subsumption) keep `system` and `code` and are expanded the same way.
   */
  | { type: 'token'; system?: string; code?: string; text?: string; ofType?: string; modifier?: 'not' | 'text' | 'of-type' | 'in' | 'not-in' | 'above' | 'below' | 'code-text'; valueSet?: string; valueSetCodes?: { system?: string; code: string }[] }
  /**
   * `:above` / `:below` (R4 search.html#versions and #recursive) keep the search value in `reference` until the
   * caller resolves them (src/search/valuesets.ts) into `references` (any of these `Type/id` or canonical
   * values); stores reject unresolved ones. On a canonical, `:below` with `url` matches `url` with any version.
   */
  | { type: 'reference'; reference?: string; targetType?: string; targetId?: string; identifierSystem?: string; identifierValue?: string; modifier?: 'identifier' | 'above' | 'below'; references?: string[] }
  | { type: 'date'; prefix: Prefix; low: string; high: string }
  | { type: 'number'; prefix: Prefix; low: number; high: number; value: number }
  | { type: 'quantity'; prefix: Prefix; low: number; high: number; value: number; system?: string; code?: string; canonicalValue?: number; canonicalLow?: number; canonicalHigh?: number; canonicalCode?: string }
  | { type: 'uri'; value: string; modifier?: 'above' | 'below' }
  | { type: 'composite'; components: Predicate[] };

export type Filter =
  /** A parameter on the searched type; `anyOf` are ORed. `missing` tests presence instead. */
  | { kind: 'param'; param: string; type: ParamType; anyOf: Predicate[]; not?: boolean }
  | { kind: 'missing'; param: string; missing: boolean }
  /** `_id` */
  | { kind: 'id'; ids: string[] }
  /**
   * Every resource except these (`Type/id`): the negated filter of the access decision point (labelled,
   * hidden and objected resources of a record). No search parameter produces it.
   */
  | { kind: 'not-refs'; refs: string[] }
  /** `_lastUpdated` */
  | { kind: 'lastUpdated'; anyOf: Extract<Predicate, { type: 'date' }>[] }
  /** Forward chain: `subject:Patient.name=x` — resources whose `param` references a match of `where`. */
  | { kind: 'chain'; param: string; targetTypes: string[]; where: Filter[] }
  /** Reverse chain: `_has:Observation:patient:code=x` — resources referenced by a `sourceType` match. */
  | { kind: 'has'; sourceType: string; param: string; where: Filter[] }
  /**
   * Compartment membership (R4 compartmentdefinition.html): resources of type T whose reference parameters
   * `paramsByType[T]` point at `targetType/targetId` (any of them).
   */
  | { kind: 'compartment'; targetType: string; targetId: string; paramsByType: Record<string, string[]> }
  /**
   * `_text` / `_content`: `anyOf` are ORed (comma); each is a list of folded words that must all start a word
   * of the resource's text (src/search/text.ts).
   */
  | { kind: 'text'; param: '_text' | '_content'; anyOf: string[][] }
  /** `near` (R4 location.html#positional): within `distanceKm` (great-circle, haversine) of a point. */
  | { kind: 'near'; param: string; anyOf: NearPoint[] };

export interface NearPoint {
  latitude: number;
  longitude: number;
  distanceKm: number;
}

export interface SortKey {
  param: string;
  descending: boolean;
}

export interface IncludeSpec {
  /** `_include` follows references out of matches; `_revinclude` finds resources pointing at them. */
  reverse: boolean;
  sourceType: string;
  param: string | '*';
  targetType?: string;
  iterate: boolean;
}

export interface SearchRequest {
  /** One type for type-level search; several (or all) for system-level search with _type. */
  resourceTypes: string[];
  filters: Filter[];
  sort: SortKey[];
  count: number;
  /** Opaque cursor from a previous page. */
  cursor?: string;
  total: 'none' | 'estimate' | 'accurate';
  include: IncludeSpec[];
}
