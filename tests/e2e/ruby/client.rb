# Ruby Sidekiq's client and API for the interop tests. Usage: ruby client.rb COMMAND [ARGS]
#   push CLASS QUEUE ARGS_JSON COUNT   Sidekiq::Client.push_bulk, prints jids
#   perform_async KEY                  RecordJob.perform_async(KEY), prints the jid
#   perform_in SECONDS KEY             RecordJob.perform_in, prints the jid
#   produce KEY INTERVAL               RecordJob.perform_async(KEY) in a loop, one every INTERVAL
#                                      seconds, printing "enqueued <jid>" once each push returned;
#                                      SIGTERM stops it between two pushes (none is half done)
#   retry_each                         Sidekiq::RetrySet: #retry each job once (retry_all loops while
#                                      the set is not empty, which a fast worker refills)
#   dead_retry_all                     Sidekiq::DeadSet: #retry each job
#   kill_retries                       Sidekiq::RetrySet: #kill each job
#   dump                               JSON of Stats, ProcessSet, Workers, RetrySet, DeadSet
#   backtraces                         JSON of each RetrySet job's jid, SortedEntry#error_backtrace,
#                                      and whether Sidekiq's compress_backtrace of those lines gives
#                                      the stored string byte for byte
require "json"
require "sidekiq"
require "sidekiq/api"
require "sidekiq/job_retry"
require_relative "jobs"

cmd = ARGV.shift
case cmd
when "push"
  klass, queue, args, count = ARGV
  jids = Sidekiq::Client.push_bulk("class" => klass, "queue" => queue, "args" => Array.new(count.to_i) { JSON.parse(args) })
  puts jids
when "perform_async"
  puts RecordJob.perform_async(ARGV[0])
when "perform_in"
  puts RecordJob.perform_in(ARGV[0].to_f, ARGV[1])
when "produce"
  key, interval = ARGV[0], ARGV[1].to_f
  STDOUT.sync = true
  stop = false
  trap("TERM") { stop = true }
  until stop
    puts "enqueued #{RecordJob.perform_async(key)}"
    sleep interval
  end
when "retry_each"
  Sidekiq::RetrySet.new.to_a.each(&:retry)
when "dead_retry_all"
  Sidekiq::DeadSet.new.to_a.each(&:retry)
when "kill_retries"
  Sidekiq::RetrySet.new.to_a.each(&:kill)
when "dump"
  stats = Sidekiq::Stats.new
  out = {
    "stats" => { "processed" => stats.processed, "failed" => stats.failed, "retry_size" => stats.retry_size,
                 "dead_size" => stats.dead_size, "scheduled_size" => stats.scheduled_size, "enqueued" => stats.enqueued,
                 "processes_size" => stats.processes_size, "workers_size" => stats.workers_size, "queues" => stats.queues },
    "processes" => Sidekiq::ProcessSet.new.map { |p| p.instance_variable_get(:@attribs) },
    "workers" => Sidekiq::Workers.new.map { |process_id, thread_id, work| [process_id, thread_id, work] },
    "retries" => Sidekiq::RetrySet.new.map(&:item),
    "dead" => Sidekiq::DeadSet.new.map(&:item),
  }
  puts JSON.generate(out)
when "backtraces"
  job_retry = Sidekiq::JobRetry.new
  out = Sidekiq::RetrySet.new.map do |entry|
    lines = entry.error_backtrace
    { "jid" => entry.jid, "lines" => lines,
      "same_bytes" => !lines.nil? && job_retry.send(:compress_backtrace, lines) == entry.item["error_backtrace"] }
  end
  puts JSON.generate(out)
else
  abort "unknown command #{cmd}"
end
