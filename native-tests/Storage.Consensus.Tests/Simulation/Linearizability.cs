namespace Storage.Consensus.Tests.Simulation;

/// <summary>One client operation in a history. <see cref="Return"/> is long.MaxValue when the client never
/// learned the outcome (the operation may or may not have taken effect).</summary>
internal sealed record HistoryOp(int Client, int Key, KvOp Op, long A, long B, long Invoke, long Return, long Output)
{
    public bool Known => Return != long.MaxValue;

    public override string ToString() =>
        $"c{Client} {Op}(k{Key}{(Op == KvOp.Put ? $",{A}" : Op == KvOp.Cas ? $",{A}->{B}" : "")}) [{Invoke}..{(Known ? Return.ToString(System.Globalization.CultureInfo.InvariantCulture) : "?")}] = {(Known ? Output.ToString(System.Globalization.CultureInfo.InvariantCulture) : "?")}";
}

/// <summary>
/// A linearizability checker in the style of Porcupine / Knossos (Wing–Gong search with Lowe's
/// memoization of (linearized set, state)) over a map of integer registers, split per key since each
/// operation touches one key (P-compositionality).
/// </summary>
internal static class Linearizability
{
    private sealed class Entry
    {
        public int Id;
        public bool IsCall;
        public long Time;
        public Entry? Match;
        public Entry? Prev;
        public Entry? Next;
    }

    /// <summary>Whether the history is linearizable; <paramref name="failure"/> names the first key that is not.</summary>
    public static bool Check(IReadOnlyList<HistoryOp> history, out string? failure)
    {
        failure = null;
        foreach (var group in history.GroupBy(o => o.Key).OrderBy(g => g.Key))
        {
            var ops = group.ToList();
            if (!CheckKey(ops))
            {
                failure = $"key {group.Key} is not linearizable:\n  " + string.Join("\n  ", ops.OrderBy(o => o.Invoke));
                return false;
            }
        }
        return true;
    }

    private static (bool Ok, long State) Step(long state, HistoryOp op) => op.Op switch
    {
        KvOp.Put => (true, op.A),
        KvOp.Get => (!op.Known || op.Output == state, state),
        KvOp.Cas => state == op.A ? (!op.Known || op.Output == 1, op.B) : (!op.Known || op.Output == 0, state),
        _ => (false, state),
    };

    private static bool CheckKey(List<HistoryOp> ops)
    {
        int n = ops.Count;
        var events = new List<Entry>(2 * n);
        for (int i = 0; i < n; i++)
        {
            var call = new Entry { Id = i, IsCall = true, Time = ops[i].Invoke };
            var ret = new Entry { Id = i, IsCall = false, Time = ops[i].Return };
            call.Match = ret;
            events.Add(call);
            events.Add(ret);
        }
        // A return at the same instant as a call is ordered first: the later operation started after it.
        events.Sort((x, y) => x.Time != y.Time ? x.Time.CompareTo(y.Time) : x.IsCall.CompareTo(y.IsCall) is var c && c != 0 ? c : x.Id.CompareTo(y.Id));
        var head = new Entry { Id = -1 };
        var prev = head;
        foreach (var e in events)
        {
            prev.Next = e;
            e.Prev = prev;
            prev = e;
        }

        int words = (n + 63) / 64;
        var linearized = new ulong[words];
        var cache = new HashSet<(CacheKey, long)>();
        var stack = new Stack<(Entry Call, long State)>();
        long state = 0;
        var entry = head.Next;
        while (head.Next is not null)
        {
            if (entry!.IsCall)
            {
                var (ok, next) = Step(state, ops[entry.Id]);
                if (ok)
                {
                    linearized[entry.Id >> 6] |= 1UL << entry.Id;
                    if (cache.Add((new CacheKey((ulong[])linearized.Clone()), next)))
                    {
                        stack.Push((entry, state));
                        state = next;
                        Lift(entry);
                        entry = head.Next;
                        continue;
                    }
                    linearized[entry.Id >> 6] &= ~(1UL << entry.Id);
                }
                entry = entry.Next;
            }
            else
            {
                if (stack.Count == 0)
                    return false;
                var (call, s) = stack.Pop();
                state = s;
                linearized[call.Id >> 6] &= ~(1UL << call.Id);
                Unlift(call);
                entry = call.Next;
            }
        }
        return true;
    }

    private static void Lift(Entry call)
    {
        call.Prev!.Next = call.Next;
        call.Next!.Prev = call.Prev;
        var ret = call.Match!;
        ret.Prev!.Next = ret.Next;
        if (ret.Next is not null)
            ret.Next.Prev = ret.Prev;
    }

    private static void Unlift(Entry call)
    {
        var ret = call.Match!;
        ret.Prev!.Next = ret;
        if (ret.Next is not null)
            ret.Next.Prev = ret;
        call.Prev!.Next = call;
        call.Next!.Prev = call;
    }

    private sealed class CacheKey(ulong[] bits) : IEquatable<CacheKey>
    {
        private readonly ulong[] _bits = bits;
        private readonly int _hash = Hash(bits);

        private static int Hash(ulong[] bits)
        {
            var h = new HashCode();
            foreach (ulong b in bits)
                h.Add(b);
            return h.ToHashCode();
        }

        public bool Equals(CacheKey? other) => other is not null && _hash == other._hash && _bits.AsSpan().SequenceEqual(other._bits);

        public override bool Equals(object? obj) => Equals(obj as CacheKey);

        public override int GetHashCode() => _hash;
    }
}
