"""SMS: the ``sms_send`` action through Twilio's REST API or OVHcloud's signed API."""

from providers.sms.actions import SMS_SEND_ID, SMS_SEND_VERSION, SmsActions, SmsSettings
from providers.sms.ovh import OVH_API_BASE, OvhSettings, ovh_signature
from providers.sms.params import SmsSendParams
from providers.sms.twilio import TWILIO_API_BASE, TwilioSettings

__all__ = [
    "OVH_API_BASE",
    "SMS_SEND_ID",
    "SMS_SEND_VERSION",
    "TWILIO_API_BASE",
    "OvhSettings",
    "SmsActions",
    "SmsSendParams",
    "SmsSettings",
    "TwilioSettings",
    "ovh_signature",
]
