namespace Storage.Nbd.Client;

/// <summary>
/// The writes and trims sent since the last flush, with copies of their bytes, in the order they were sent: a server
/// that restarts loses the writes it acknowledged but had not made durable, so after a reconnection they are sent
/// again (idempotently, in order) before anything else. A flush that succeeds lets go of what was acknowledged before
/// it was sent. Thread-safe.
/// </summary>
internal sealed class UnflushedWrites
{
    private readonly Lock _lock = new();
    private readonly LinkedList<Entry> _entries = new();
    private long _bytes;

    /// <summary>Bytes held.</summary>
    public long Bytes
    {
        get
        {
            lock (_lock)
                return _bytes;
        }
    }

    /// <summary>Records a write before it is sent; returns its handle for <see cref="Acknowledged"/> or <see cref="Failed"/>.</summary>
    public object Write(long offset, ReadOnlySpan<byte> data)
    {
        // A plain array, not a pooled one: a replay may still be sending it after a flush let go of it.
        return Add(new Entry(offset, data.Length, data.ToArray()));
    }

    /// <summary>Records a trim before it is sent.</summary>
    public object Trim(long offset, int length) => Add(new Entry(offset, length, null));

    private LinkedListNode<Entry> Add(Entry entry)
    {
        lock (_lock)
        {
            _bytes += entry.Data is null ? 0 : entry.Length;
            return _entries.AddLast(entry);
        }
    }

    /// <summary>The server acknowledged the request.</summary>
    public static void Acknowledged(object handle) => ((LinkedListNode<Entry>)handle).Value.Acknowledged = true;

    /// <summary>The request failed for good (the caller got the error): it is not sent again.</summary>
    public void Failed(object handle) => Remove([(LinkedListNode<Entry>)handle]);

    /// <summary>What a flush about to be sent covers: the requests acknowledged so far.</summary>
    public object[] Covered()
    {
        lock (_lock)
        {
            var covered = new List<object>();
            for (var node = _entries.First; node is not null; node = node.Next)
            {
                if (node.Value.Acknowledged)
                    covered.Add(node);
            }
            return [.. covered];
        }
    }

    /// <summary>The flush succeeded: what it covered is durable.</summary>
    public void Flushed(object[] covered) => Remove(covered.Cast<LinkedListNode<Entry>>());

    private void Remove(IEnumerable<LinkedListNode<Entry>> nodes)
    {
        lock (_lock)
        {
            foreach (var node in nodes)
            {
                if (node.List is null)
                    continue;
                _entries.Remove(node);
                if (node.Value.Data is not null)
                    _bytes -= node.Value.Length;
            }
        }
    }

    /// <summary>Every request held, oldest first: what a fresh connection sends again.</summary>
    public IReadOnlyList<(long Offset, int Length, byte[]? Data, object Handle)> Snapshot()
    {
        lock (_lock)
        {
            var all = new List<(long, int, byte[]?, object)>(_entries.Count);
            for (var node = _entries.First; node is not null; node = node.Next)
                all.Add((node.Value.Offset, node.Value.Length, node.Value.Data, node));
            return all;
        }
    }

    private sealed class Entry(long offset, int length, byte[]? data)
    {
        public long Offset { get; } = offset;

        public int Length { get; } = length;

        public byte[]? Data { get; } = data;

        public volatile bool Acknowledged;
    }
}
