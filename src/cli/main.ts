#!/usr/bin/env node
/**
 * The `dsp-fhir` command-line program. One sub-command per file under src/cli/.
 */
import { Command } from 'commander';
import { VERSION } from '../version.ts';
import { registerServe } from './serve.ts';
import { registerTranslate } from './translate.ts';
import { registerToken } from './token.ts';
import { registerAudit } from './audit.ts';
import { registerPki } from './pki.ts';
import { registerValidate } from './validate.ts';
import { registerPackage } from './package.ts';
import { registerTerminology } from './terminology.ts';

const program = new Command();
program.name('dsp-fhir').description('DSP FHIR server for the Luxembourg shared health record').version(VERSION);
registerServe(program);
registerTranslate(program);
registerToken(program);
registerAudit(program);
registerPki(program);
registerValidate(program);
registerPackage(program);
registerTerminology(program);

await program.parseAsync(process.argv);
