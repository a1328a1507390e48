/**
 * Cross-border Patient Summary: Luxembourg PS (FHIR document Bundle) <-> eHDSI Patient Summary pivot CDA L3.
 */
export { bundleToCda, bundleToCdaTree, SECTIONS, MATRICULE_OID, type ToCdaOptions } from './to-cda.ts';
export { cdaToBundle, cdaDocumentToBundle, EXT_CDA_CODE, PS_TEMPLATE, type FromCdaOptions } from './from-cda.ts';
export { parseXml, DEFAULT_XML_LIMITS, type XmlLimits } from './cda/xml.ts';
export { toCD, fromCD, VS, MVC_VERSION, EXT_NULLFLAVOR } from './transcode.ts';
