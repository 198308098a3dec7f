# Job classes shared by name with the Swift worker's example jobs (damselfly-jobs):
# `sidekiq -r ./tests/e2e/ruby/jobs.rb` runs them in a Ruby Sidekiq 6.4 worker.
require "sidekiq"

Sidekiq.configure_server { |c| c.redis = { url: ENV.fetch("REDIS_URL") } }
Sidekiq.configure_client { |c| c.redis = { url: ENV.fetch("REDIS_URL") } }

# Does nothing (the benchmark's job).
class NoopJob
  include Sidekiq::Worker
  def perform(*); end
end

# Records "<jid>:ruby" in the list args[0]: the witness that Ruby ran the job.
class RecordJob
  include Sidekiq::Worker
  def perform(key = "jobs:ran", *)
    Sidekiq.redis { |c| c.rpush(key, "#{jid}:ruby") }
  end
end

# Fails its first args[0] attempts (every attempt when negative).
class FailingJob
  include Sidekiq::Worker
  def perform(failures = -1, *)
    raise "FailingJob failed on purpose (ruby)" if failures.negative? || (@retry_count || 0) < failures
  end
end

# The benchmark runs quiet, as Sidekiq's own bench does.
Sidekiq.logger.level = Logger::WARN if ENV["SIDEKIQ_QUIET"]
