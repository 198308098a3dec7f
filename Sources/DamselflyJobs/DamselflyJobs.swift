/// Sidekiq-compatible jobs (being built).
public enum DamselflyJobs {}
