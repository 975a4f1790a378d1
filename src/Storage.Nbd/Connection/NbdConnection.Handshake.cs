using System.Buffers.Binary;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Storage.Nbd.Protocol;

namespace Storage.Nbd.Connection;

/// <summary>
/// Fixed-newstyle option haggling. Everything here is bounded: option data beyond <see cref="MaxOptionLength"/> is
/// skipped with an error (or ends the connection past <see cref="OptionDiscardLimit"/>), a client gets at most
/// <see cref="MaxOptions"/> options, and the whole handshake runs under <see cref="NbdServerOptions.HandshakeTimeout"/>.
/// </summary>
internal sealed partial class NbdConnection
{
    private const int MaxOptionLength = 16 << 10;
    private const long OptionDiscardLimit = 1 << 20;
    private const int MaxOptions = 256;

    /// <summary>True when the client chose an export and transmission begins; false to close the connection.</summary>
    private bool Handshake()
    {
        var hello = new byte[18];
        BinaryPrimitives.WriteUInt64BigEndian(hello, NbdProtocol.InitPassword);
        BinaryPrimitives.WriteUInt64BigEndian(hello.AsSpan(8), NbdProtocol.OptionMagic);
        BinaryPrimitives.WriteUInt16BigEndian(hello.AsSpan(16), NbdProtocol.FlagFixedNewstyle | NbdProtocol.FlagNoZeroes);
        _transport.Send(hello);

        if (!_reader.Fill(4))
            return false;
        uint clientFlags = BinaryPrimitives.ReadUInt32BigEndian(_reader.Span);
        _reader.Consume(4);
        if ((clientFlags & ~(NbdProtocol.ClientFlagFixedNewstyle | NbdProtocol.ClientFlagNoZeroes)) != 0)
        {
            Log($"unknown client flags 0x{clientFlags:x}; closing");
            return false;
        }
        bool fixedNewstyle = (clientFlags & NbdProtocol.ClientFlagFixedNewstyle) != 0;
        bool noZeroes = (clientFlags & NbdProtocol.ClientFlagNoZeroes) != 0;
        bool tlsActive = false;

        for (int count = 0; ; count++)
        {
            if (count == MaxOptions)
            {
                Log($"more than {MaxOptions} options; closing");
                return false;
            }
            if (!_reader.Fill(16))
                return false;
            ulong magic = BinaryPrimitives.ReadUInt64BigEndian(_reader.Span);
            uint option = BinaryPrimitives.ReadUInt32BigEndian(_reader.Span[8..]);
            uint length = BinaryPrimitives.ReadUInt32BigEndian(_reader.Span[12..]);
            _reader.Consume(16);
            if (magic != NbdProtocol.OptionMagic)
            {
                Log("bad option magic; closing");
                return false;
            }
            // Without fixed newstyle the only option is EXPORT_NAME, and nothing else can be answered.
            if (!fixedNewstyle && option != NbdProtocol.OptExportName)
            {
                Log($"option {option} from a client without fixed newstyle; closing");
                return false;
            }
            if (length > MaxOptionLength)
            {
                if (length > OptionDiscardLimit || !fixedNewstyle || !_reader.Skip(length))
                {
                    Log($"option {option} with {length} bytes of data; closing");
                    return false;
                }
                Reply(option, NbdProtocol.RepErrTooBig, $"option data is limited to {MaxOptionLength} bytes");
                continue;
            }
            if (!_reader.Fill((int)length))
                return false;
            byte[] data = _reader.Span[..(int)length].ToArray();
            _reader.Consume((int)length);

            if (_tls is not null && !tlsActive && option is not (NbdProtocol.OptStartTls or NbdProtocol.OptAbort))
            {
                if (option == NbdProtocol.OptExportName)
                {
                    Log("NBD_OPT_EXPORT_NAME before TLS on a TLS listener; closing");
                    return false;
                }
                Reply(option, NbdProtocol.RepErrTlsRequired, "this server requires TLS (NBD_OPT_STARTTLS)");
                continue;
            }

            switch (option)
            {
                case NbdProtocol.OptExportName:
                    return ExportName(data, noZeroes);

                case NbdProtocol.OptAbort:
                    Reply(option, NbdProtocol.RepAck, []);
                    return false;

                case NbdProtocol.OptList:
                    if (length != 0)
                    {
                        Reply(option, NbdProtocol.RepErrInvalid, "NBD_OPT_LIST takes no data");
                        break;
                    }
                    foreach (var export in _server.ExportsByName())
                        Reply(option, NbdProtocol.RepServer, ServerReplyData(export));
                    Reply(option, NbdProtocol.RepAck, []);
                    break;

                case NbdProtocol.OptStartTls:
                    if (_tls is null)
                    {
                        Reply(option, NbdProtocol.RepErrPolicy, "TLS is not configured on this listener");
                        break;
                    }
                    if (tlsActive || length != 0)
                    {
                        Reply(option, NbdProtocol.RepErrInvalid, tlsActive ? "TLS is already active" : "NBD_OPT_STARTTLS takes no data");
                        break;
                    }
                    if (_reader.Buffered != 0)
                    {
                        Log("data sent after NBD_OPT_STARTTLS before the TLS handshake; closing");
                        return false;
                    }
                    Reply(option, NbdProtocol.RepAck, []);
                    StartTls();
                    tlsActive = true;
                    // What was negotiated in the clear could have been injected; start over.
                    _structuredReplies = false;
                    _metaContextId = 0;
                    break;

                case NbdProtocol.OptListMetaContext:
                case NbdProtocol.OptSetMetaContext:
                    MetaContext(option, data);
                    break;

                case NbdProtocol.OptInfo:
                case NbdProtocol.OptGo:
                    if (Info(option, data) && option == NbdProtocol.OptGo)
                        return true;
                    break;

                case NbdProtocol.OptStructuredReply:
                    if (length != 0)
                    {
                        Reply(option, NbdProtocol.RepErrInvalid, "NBD_OPT_STRUCTURED_REPLY takes no data");
                        break;
                    }
                    _structuredReplies = true;
                    Reply(option, NbdProtocol.RepAck, []);
                    break;

                default:
                    Reply(option, NbdProtocol.RepErrUnsupported, $"option {option} is not supported");
                    break;
            }
        }
    }

    /// <summary>NBD_OPT_EXPORT_NAME: the export's size and flags, then transmission; an unknown name ends the connection.</summary>
    private bool ExportName(byte[] data, bool noZeroes)
    {
        string name = Encoding.UTF8.GetString(data);
        var export = _server.FindExport(name);
        if (export is null)
        {
            Log($"NBD_OPT_EXPORT_NAME '{name}': no such export; closing");
            return false;
        }
        var reply = new byte[noZeroes ? 10 : 134];
        BinaryPrimitives.WriteUInt64BigEndian(reply, (ulong)export.Device.Capacity);
        BinaryPrimitives.WriteUInt16BigEndian(reply.AsSpan(8), TransmissionFlags(export));
        _transport.Send(reply);
        _export = export;
        if (_metaContextExport != name)
            _metaContextId = 0;
        return true;
    }

    /// <summary>NBD_OPT_INFO and NBD_OPT_GO; true when the export was found and described.</summary>
    private bool Info(uint option, byte[] data)
    {
        // Data: u32 name length, name, u16 number of info requests, u16 each.
        uint nameLength = data.Length >= 6 ? BinaryPrimitives.ReadUInt32BigEndian(data) : uint.MaxValue;
        if (nameLength > data.Length - 6)
        {
            Reply(option, NbdProtocol.RepErrInvalid, "malformed export name");
            return false;
        }
        int requests = BinaryPrimitives.ReadUInt16BigEndian(data.AsSpan(4 + (int)nameLength));
        if (data.Length != 6 + (int)nameLength + 2 * requests)
        {
            Reply(option, NbdProtocol.RepErrInvalid, "option length does not match the information requests");
            return false;
        }
        string name = Encoding.UTF8.GetString(data, 4, (int)nameLength);
        var export = _server.FindExport(name);
        if (export is null)
        {
            Reply(option, NbdProtocol.RepErrUnknown, $"no export named '{name}'");
            return false;
        }
        bool wantName = false, wantDescription = false, wantBlockSize = false;
        for (int i = 0; i < requests; i++)
        {
            switch (BinaryPrimitives.ReadUInt16BigEndian(data.AsSpan(6 + (int)nameLength + 2 * i)))
            {
                case NbdProtocol.InfoName: wantName = true; break;
                case NbdProtocol.InfoDescription: wantDescription = true; break;
                case NbdProtocol.InfoBlockSize: wantBlockSize = true; break;
            }
        }

        var info = new byte[12];
        BinaryPrimitives.WriteUInt16BigEndian(info, NbdProtocol.InfoExport);
        BinaryPrimitives.WriteUInt64BigEndian(info.AsSpan(2), (ulong)export.Device.Capacity);
        BinaryPrimitives.WriteUInt16BigEndian(info.AsSpan(10), TransmissionFlags(export));
        Reply(option, NbdProtocol.RepInfo, info);
        if (wantName)
            Reply(option, NbdProtocol.RepInfo, InfoString(NbdProtocol.InfoName, export.NameUtf8));
        if (wantDescription && export.DescriptionUtf8 is { } description)
            Reply(option, NbdProtocol.RepInfo, InfoString(NbdProtocol.InfoDescription, description));
        if (wantBlockSize)
        {
            var (minimum, preferred, maximum) = BlockSizes(export);
            var sizes = new byte[14];
            BinaryPrimitives.WriteUInt16BigEndian(sizes, NbdProtocol.InfoBlockSize);
            BinaryPrimitives.WriteUInt32BigEndian(sizes.AsSpan(2), (uint)minimum);
            BinaryPrimitives.WriteUInt32BigEndian(sizes.AsSpan(6), (uint)preferred);
            BinaryPrimitives.WriteUInt32BigEndian(sizes.AsSpan(10), (uint)maximum);
            Reply(option, NbdProtocol.RepInfo, sizes);
        }
        Reply(option, NbdProtocol.RepAck, []);
        if (option == NbdProtocol.OptGo)
        {
            _export = export;
            // Contexts chosen for another export do not apply to this one.
            if (_metaContextExport != name)
                _metaContextId = 0;
        }
        return true;
    }

    /// <summary>Minimum (the sector: smaller requests are served by read-modify-write), preferred and maximum payload.</summary>
    private (int Minimum, int Preferred, int Maximum) BlockSizes(NbdExport export)
    {
        int minimum = export.Device.SectorSize;
        int maximum = _options.MaxPayloadSize;
        int preferred = Math.Clamp(export.PreferredBlockSize ?? _options.PreferredBlockSize, minimum, maximum);
        return (minimum, preferred, maximum);
    }

    private ushort TransmissionFlags(NbdExport export)
    {
        int flags = NbdProtocol.TxHasFlags | NbdProtocol.TxSendFlush | NbdProtocol.TxCanMultiConn;
        flags |= export.ReadOnly
            ? NbdProtocol.TxReadOnly
            : NbdProtocol.TxSendFua | NbdProtocol.TxSendTrim | NbdProtocol.TxSendWriteZeroes;
        if (_structuredReplies)
            flags |= NbdProtocol.TxSendDf;
        return (ushort)flags;
    }

    private static byte[] ServerReplyData(NbdExport export)
    {
        // u32 name length, name, then (our choice, as libnbd reads it) the description for humans.
        var description = export.DescriptionUtf8 ?? [];
        var data = new byte[4 + export.NameUtf8.Length + description.Length];
        BinaryPrimitives.WriteUInt32BigEndian(data, (uint)export.NameUtf8.Length);
        export.NameUtf8.CopyTo(data, 4);
        description.CopyTo(data, 4 + export.NameUtf8.Length);
        return data;
    }

    private static byte[] InfoString(ushort type, byte[] text)
    {
        var data = new byte[2 + text.Length];
        BinaryPrimitives.WriteUInt16BigEndian(data, type);
        text.CopyTo(data, 2);
        return data;
    }

    private void Reply(uint option, uint type, string message) => Reply(option, type, Encoding.UTF8.GetBytes(message));

    /// <summary>An option reply: magic, option, reply type, length, data.</summary>
    private void Reply(uint option, uint type, ReadOnlySpan<byte> data)
    {
        var reply = new byte[20 + data.Length];
        BinaryPrimitives.WriteUInt64BigEndian(reply, NbdProtocol.OptionReplyMagic);
        BinaryPrimitives.WriteUInt32BigEndian(reply.AsSpan(8), option);
        BinaryPrimitives.WriteUInt32BigEndian(reply.AsSpan(12), type);
        BinaryPrimitives.WriteUInt32BigEndian(reply.AsSpan(16), (uint)data.Length);
        data.CopyTo(reply.AsSpan(20));
        _transport.Send(reply);
    }

    /// <summary>The TLS handshake (the client starts it after our ACK); then every byte goes through TLS.</summary>
    private void StartTls()
    {
        var ssl = new SslStream(new NetworkStream(_socket, ownsSocket: false), leaveInnerStreamOpen: false);
        _transport = new Transport.Tls(ssl);
        _reader.Transport = _transport;
        ssl.AuthenticateAsServer(new SslServerAuthenticationOptions
        {
            ServerCertificate = _tls!.Certificate,
            EnabledSslProtocols = _tls.Protocols,
            ClientCertificateRequired = _tls.ClientCertificateValidation is not null,
            RemoteCertificateValidationCallback = _tls.ClientCertificateValidation,
            CertificateChainPolicy = _tls.ClientCertificateChainPolicy ?? new X509ChainPolicy { DisableCertificateDownloads = true, RevocationMode = X509RevocationMode.NoCheck },
            // A refused client certificate is found after the handshake; no session ticket may outlive that.
            AllowTlsResume = _tls.ClientCertificateValidation is null,
        });
    }
}
