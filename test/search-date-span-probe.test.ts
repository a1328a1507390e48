/**
 * test/search-date-span.test.ts again with every filter that has a probe form checked row by row
 * (DSP_SEARCH_PROBE_BOUND=0, read when the store module loads: set before the file is imported). No date span
 * is then small enough to drive a query: the date filters are probed per row, and `_has` takes its per-row form.
 */
process.env.DSP_SEARCH_PROBE_BOUND = '0';
await import('./search-date-span.test.ts');
