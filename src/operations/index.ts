/**
 * Loads every operation module; each registers itself with the operation registry. Adding an operation is
 * one new module and one import line here.
 */
export { operationRegistry } from './registry.ts';
import './everything.ts';
import './terminology.ts';
import './reindex.ts';
import './validate.ts';
import './crossborder.ts';
import './patient-access.ts';
