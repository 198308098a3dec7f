extension Shard {
    /// Serves, in order, the waiters behind the first one of `fingerprint`'s
    /// list that can be served now. Stream readers each wait for entries past
    /// their own ID (or their group's), so the first in line may have nothing
    /// to take while later ones do; list pops never get here.
    func serveWaitersBehind(_ fingerprint: LockFingerprint) {
        var i = 1
        while let list = blocking.waiters[fingerprint], i < list.count {
            let (waiter, position) = list[i]
            if !waiter.isWaiting || !waiter.ready(self, position) {
                if !waiter.isWaiting { blocking.waiters[fingerprint]!.remove(at: i) } else { i += 1 }
                continue
            }
            guard waiter.claim() else {
                blocking.waiters[fingerprint]!.remove(at: i)
                continue
            }
            // Removes it from this list (and its other keys and shards).
            dropRegistrations(of: waiter)
            if let rest = blocking.waiters[fingerprint], i < rest.count, rest[i].waiter === waiter {
                blocking.waiters[fingerprint]!.remove(at: i)
            }
            waiter.serve(self, position)
        }
    }

    /// FLUSHALL / FLUSHDB emptied `database` (nil: every database): each key
    /// someone waits on there is looked at again, so a reader of a consumer
    /// group hears that its stream is gone, as Redis 7.0's flush does
    /// (`scanDatabaseForDeletedStreams`); list and XREAD waiters find nothing
    /// and stay parked.
    public func signalWaitedKeys(database: Int?) {
        for (fingerprint, list) in blocking.waiters
        where list.contains(where: { database == nil || $0.waiter.database == database }) {
            blocking.readyKeys.append(fingerprint)
        }
        serveReadyKeys()
    }
}
