//! The `UriPart` filter: a small URI reader answering the questions .NET's `Uri` answers.

struct Uri {
    scheme: String,
    user_info: String,
    host: String,
    port: Option<u16>,
    path: String,
    query: String,
    fragment: String,
}

fn default_port(scheme: &str) -> Option<u16> {
    Some(match scheme {
        "http" | "ws" => 80,
        "https" | "wss" => 443,
        "ftp" => 21,
        "gopher" => 70,
        "nntp" | "news" => 119,
        "ldap" => 389,
        "mailto" => 25,
        "net.tcp" => 808,
        _ => return None,
    })
}

/// Escapes what .NET escapes when it normalises a path or query: spaces, controls, non-ASCII.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii_graphic()
            && !matches!(c, '"' | '<' | '>' | '\\' | '^' | '`' | '{' | '|' | '}')
        {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

/// Reads `scheme://[user@]host[:port][/path][?query][#fragment]`; `None` for relative URIs.
fn parse_absolute(text: &str) -> Result<Option<Uri>, ()> {
    let Some((scheme, rest)) = text.split_once("://") else {
        return Ok(None);
    };
    let mut chars = scheme.chars();
    let valid_scheme = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '-'));
    if !valid_scheme {
        return Ok(None);
    }
    let scheme = scheme.to_ascii_lowercase();
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let (user_info, host_port) = match authority.rsplit_once('@') {
        Some((user, host)) => (user.to_string(), host),
        None => (String::new(), authority),
    };
    let (host, port) = if let Some(stripped) = host_port.strip_prefix('[') {
        let close = stripped.find(']').ok_or(())?;
        let after = &stripped[close + 1..];
        let host = format!("[{}]", &stripped[..close]);
        match after.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None if after.is_empty() => (host, None),
            None => return Err(()),
        }
    } else {
        match host_port.rsplit_once(':') {
            Some((host, port)) => (host.to_string(), Some(port)),
            None => (host_port.to_string(), None),
        }
    };
    let port = match port {
        Some(p) => Some(p.parse::<u16>().map_err(|_| ())?),
        None => None,
    };
    if host.is_empty() && scheme != "file" {
        return Err(());
    }
    let (before_fragment, fragment) = match tail.split_once('#') {
        Some((b, f)) => (b, format!("#{}", escape(f))),
        None => (tail, String::new()),
    };
    let (path, query) = match before_fragment.split_once('?') {
        Some((p, q)) => (p, format!("?{}", escape(q))),
        None => (before_fragment, String::new()),
    };
    let path = if path.is_empty() {
        "/".to_string()
    } else {
        escape(path)
    };
    Ok(Some(Uri {
        host: host.to_ascii_lowercase(),
        scheme,
        user_info,
        port,
        path,
        query,
        fragment,
    }))
}

fn unescape(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let Some(b) = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn host_type(host: &str, scheme: &str) -> &'static str {
    if host.starts_with('[') {
        "IPv6"
    } else if host.split('.').count() == 4 && host.split('.').all(|p| p.parse::<u8>().is_ok()) {
        "IPv4"
    } else if host.is_empty() || scheme == "file" {
        "Basic"
    } else {
        "Dns"
    }
}

/// The `UriPart` filter. Errors are written into the output, as Octostache does.
pub(crate) fn part(input: &str, args: &[String]) -> String {
    let Some(option) = args.first() else {
        return "[UriPart error: no argument given]".to_string();
    };
    let uri = match parse_absolute(input.trim()) {
        Ok(uri) => uri,
        Err(()) => return input.to_string(),
    };
    let key = option.to_lowercase();
    let Some(uri) = uri else {
        return match key.as_str() {
            "isabsoluteuri" => "false".to_string(),
            "absolutepath" | "absoluteuri" | "authority" | "dnssafehost" | "fragment" | "host"
            | "hostandport" | "hostnametype" | "isdefaultport" | "isfile" | "isloopback"
            | "isunc" | "path" | "pathandquery" | "port" | "query" | "scheme"
            | "schemeandserver" | "userinfo" => {
                format!(
                    "[UriPart {option} error: This operation is not supported for a relative URI.]"
                )
            }
            _ => format!("[UriPart {option} error: argument '{option}' not supported]"),
        };
    };
    let default = default_port(&uri.scheme);
    let port = uri.port.or(default);
    let is_default = uri.port.is_none() || uri.port == default;
    let port_suffix = match uri.port {
        Some(p) if !is_default => format!(":{p}"),
        _ => String::new(),
    };
    let authority = format!("{}{port_suffix}", uri.host);
    let bool_text = |b: bool| b.to_string();
    match key.as_str() {
        "absolutepath" => uri.path,
        "absoluteuri" => {
            let user = if uri.user_info.is_empty() {
                String::new()
            } else {
                format!("{}@", uri.user_info)
            };
            format!(
                "{}://{user}{authority}{}{}{}",
                uri.scheme, uri.path, uri.query, uri.fragment
            )
        }
        "authority" => authority,
        "dnssafehost" => uri
            .host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        "fragment" => uri.fragment,
        "host" => uri.host,
        "hostandport" => match port {
            Some(p) => format!("{}:{p}", uri.host),
            None => uri.host,
        },
        "hostnametype" => host_type(&uri.host, &uri.scheme).to_string(),
        "isabsoluteuri" => "true".to_string(),
        "isdefaultport" => bool_text(is_default),
        "isfile" => bool_text(uri.scheme == "file"),
        "isloopback" => bool_text(
            uri.host == "localhost"
                || uri.host.starts_with("127.")
                || uri.host == "[::1]"
                || uri.host.is_empty(),
        ),
        "isunc" => bool_text(uri.scheme == "file" && !uri.host.is_empty()),
        "path" => unescape(&uri.path),
        "pathandquery" => format!("{}{}", uri.path, uri.query),
        "port" => port.map_or("-1".to_string(), |p| p.to_string()),
        "query" => uri.query,
        "scheme" => uri.scheme,
        "schemeandserver" => format!("{}://{authority}", uri.scheme),
        "userinfo" => uri.user_info,
        _ => format!("[UriPart {option} error: argument '{option}' not supported]"),
    }
}
