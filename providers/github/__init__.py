"""GitHub issues and pull requests of chosen repositories (type ``GITHUB``)."""

from providers.github.connector import GitHubConfig, create_github_connector
from providers.github.schema import GitHubIssue

__all__ = ["GitHubConfig", "GitHubIssue", "create_github_connector"]
