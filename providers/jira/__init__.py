"""Jira issues selected by a JQL query (type ``JIRA``)."""

from providers.jira.connector import JiraConfig, create_jira_connector
from providers.jira.schema import JiraIssue

__all__ = ["JiraConfig", "JiraIssue", "create_jira_connector"]
