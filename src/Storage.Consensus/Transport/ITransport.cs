namespace Storage.Consensus;

/// <summary>
/// Carries consensus messages between replicas. Delivery is best-effort: messages may be lost, delayed,
/// duplicated or reordered, which the protocol tolerates.
/// </summary>
public interface ITransport : IDisposable
{
    /// <summary>Queues <paramref name="message"/> for <see cref="Message.To"/>; never blocks on the network.
    /// Thread-safe.</summary>
    void Send(Message message);

    /// <summary>Starts delivering incoming messages to <paramref name="receive"/>, which may be called from
    /// any thread (concurrently for different senders) and must not block.</summary>
    void Start(Action<Message> receive);
}

/// <summary>An in-process network between replicas of one process; links can be cut for tests.</summary>
public sealed class InProcessNetwork
{
    private readonly Lock _lock = new();
    private readonly Dictionary<int, Action<Message>> _receivers = [];
    private readonly HashSet<int> _isolated = [];

    /// <summary>A transport endpoint for replica <paramref name="id"/>.</summary>
    public ITransport Connect(int id) => new Endpoint(this, id);

    /// <summary>Cuts (or restores) every link of replica <paramref name="id"/>.</summary>
    public void Isolate(int id, bool isolated)
    {
        lock (_lock)
        {
            if (isolated)
                _isolated.Add(id);
            else
                _isolated.Remove(id);
        }
    }

    private void Deliver(Message m)
    {
        Action<Message>? receive;
        lock (_lock)
        {
            if (_isolated.Contains(m.From) || _isolated.Contains(m.To) || !_receivers.TryGetValue(m.To, out receive))
                return;
        }
        receive(m);
    }

    private sealed class Endpoint(InProcessNetwork network, int id) : ITransport
    {
        public void Send(Message message) => network.Deliver(message);

        public void Start(Action<Message> receive)
        {
            lock (network._lock)
                network._receivers[id] = receive;
        }

        public void Dispose()
        {
            lock (network._lock)
                network._receivers.Remove(id);
        }
    }
}
