"""HL7 FHIR R4: the ``patient_alert`` action (Communication and/or Flag)."""

from providers.fhir.actions import PATIENT_ALERT_ID, PATIENT_ALERT_VERSION, FhirActions
from providers.fhir.params import PatientAlertParams
from providers.fhir.resources import STEP_IDENTIFIER_SYSTEM
from providers.fhir.server import FhirSettings

__all__ = [
    "PATIENT_ALERT_ID",
    "PATIENT_ALERT_VERSION",
    "STEP_IDENTIFIER_SYSTEM",
    "FhirActions",
    "FhirSettings",
    "PatientAlertParams",
]
