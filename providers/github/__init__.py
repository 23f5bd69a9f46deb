"""GitHub issues and pull requests of chosen repositories (type ``GITHUB``)."""

from providers.github.connector import RATE_LIMITS, GitHubConfig, create_github_connector
from providers.github.schema import GitHubIssue

__all__ = ["RATE_LIMITS", "GitHubConfig", "GitHubIssue", "create_github_connector"]
