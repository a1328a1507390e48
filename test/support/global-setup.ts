/**
 * Vitest global setup: every test run gets its own temporary folder (TMPDIR, which os.tmpdir() and the
 * spawned servers read), removed when the run ends, so data folders, audit stores and converted documents
 * of the tests never pile up in the machine's temporary folder.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export default function setup(): () => void {
  const previous = process.env.TMPDIR;
  // The FHIR package URL indexes are a cache worth keeping between runs: left in the machine's temp folder.
  process.env.DSP_PACKAGE_INDEX_DIR ??= join(tmpdir(), 'dsp-fhir-package-index');
  const dir = mkdtempSync(join(tmpdir(), 'dsp-fhir-tests-'));
  process.env.TMPDIR = dir;
  return () => {
    if (previous === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = previous;
    if (!process.env.DSP_KEEP_TEST_FILES) rmSync(dir, { recursive: true, force: true });
  };
}
