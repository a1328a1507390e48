/** Extension URLs of the terminology module (project-defined where FHIR R4 has no element for the fact). */
export const EXT_BASE = 'http://dsp.lu/fhir/StructureDefinition/';
/** On ValueSet.compose.include.concept: the concept is abstract (ART-DECOR type "A"): not valid as a code. */
export const EXT_NOT_SELECTABLE = `${EXT_BASE}valueset-concept-not-selectable`;
/** On ValueSet.compose.include.concept: the concept is deprecated in this value set (ART-DECOR type "D"). */
export const EXT_DEPRECATED = `${EXT_BASE}valueset-concept-deprecated`;
/** On ValueSet: the ART-DECOR version label of the source value set. */
export const EXT_ARTDECOR_VERSION = `${EXT_BASE}artdecor-version-label`;
/** On ValueSet: a null flavor the value set accepts as an exception (ART-DECOR `<exception>`). */
export const EXT_NULLFLAVOR_EXCEPTION = `${EXT_BASE}valueset-exception`;
/**
 * On ConceptMap.group.element.target (and CodeSystem.concept): where the mapping (or code) was seen, complex:
 * `file` (valueString, path of the sample under specs/ehdsi/samples/ps) and `xpath` (valueString, the element
 * holding the national code; unprefixed names are in the CDA namespace urn:hl7-org:v3).
 */
export const EXT_SOURCE_SAMPLE = `${EXT_BASE}terminology-source-sample`;
