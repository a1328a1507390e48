/**
 * The search suite again, with every filter that has a probe form checked row by row (`EXISTS`) instead of
 * driving the query (`rowid IN (...)`). The SQLite store chooses the probe form for filters with at least
 * DSP_SEARCH_PROBE_BOUND index rows (2,000 by default: test data never gets there), so without this file
 * the form that serves common filters on large databases would not be tested. The bound is read when the
 * store module loads: it is set before the suite is imported.
 */
process.env.DSP_SEARCH_PROBE_BOUND = '0';
await import('./search.test.ts');
await import('./compartment.test.ts');
