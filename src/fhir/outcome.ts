/**
 * OperationOutcome construction and the one error type every layer throws. The HTTP layer turns a FhirError
 * into an OperationOutcome response with its status; anything else becomes a 500 without internals.
 */
import type { OperationOutcome, OperationOutcomeIssue } from 'fhir/r4';

export type IssueSeverity = OperationOutcomeIssue['severity'];
export type IssueCode = OperationOutcomeIssue['code'];

export interface Issue {
  severity: IssueSeverity;
  code: IssueCode;
  diagnostics: string;
  /** FHIRPath expressions locating the problem, e.g. `Patient.name[0].given[1]`. */
  expression?: string[];
}

export class FhirError extends Error {
  readonly status: number;
  readonly issues: Issue[];
  /** Extra response headers (e.g. Location for a 410 with history). */
  readonly headers: Record<string, string>;

  constructor(status: number, issues: Issue[] | string, code: IssueCode = 'processing', headers: Record<string, string> = {}) {
    const list = typeof issues === 'string' ? [{ severity: 'error' as const, code, diagnostics: issues }] : issues;
    super(list.map((i) => i.diagnostics).join('; '));
    this.name = 'FhirError';
    this.status = status;
    this.issues = list;
    this.headers = headers;
  }

  toOperationOutcome(): OperationOutcome {
    return operationOutcome(this.issues);
  }
}

export function operationOutcome(issues: Issue[]): OperationOutcome {
  return {
    resourceType: 'OperationOutcome',
    issue: issues.map((i) => ({
      severity: i.severity,
      code: i.code,
      diagnostics: i.diagnostics,
      ...(i.expression?.length ? { expression: i.expression } : {}),
    })),
  };
}

export const badRequest = (msg: string, expression?: string[]) =>
  new FhirError(400, [{ severity: 'error', code: 'invalid', diagnostics: msg, expression }]);
export const notFound = (msg: string) => new FhirError(404, msg, 'not-found');
export const gone = (msg: string) => new FhirError(410, msg, 'deleted');
export const forbidden = (msg: string) => new FhirError(403, msg, 'forbidden');
export const conflict = (msg: string) => new FhirError(409, msg, 'conflict');
export const preconditionFailed = (msg: string) => new FhirError(412, msg, 'conflict');
export const unprocessable = (issues: Issue[]) => new FhirError(422, issues);
export const notSupported = (msg: string) => new FhirError(400, msg, 'not-supported');
export const tooLarge = (msg: string) => new FhirError(413, msg, 'too-costly');
