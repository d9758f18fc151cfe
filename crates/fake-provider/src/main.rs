//! `fake-provider` binary: serves the fake rembg.com, verging.ai, remove.bg
//! and rembg-server APIs until
//! killed, for benchmarks and manual demos. Owns only flag parsing; the
//! server is the library's [`fake_provider::FakeProvider`].
//!
//! ```text
//! fake-provider --port 8080 --latency-ms 200 --rate-limit 10 --key K --log requests.jsonl
//! ```

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use fake_provider::{
    Config, FakeProvider, Fault, FaultRule, MegapixelWindow, RateLimit, RetryAfter,
};

const USAGE: &str = "\
fake-provider: fake rembg.com, verging.ai, remove.bg and rembg-server APIs on one port

USAGE: fake-provider [OPTIONS]

  --host IP              address to bind (default 127.0.0.1)
  --port P               port (default 0: any free port)
  --key K                valid key for both APIs
  --rembg-key K          valid rembg key (default test-rembg-key)
  --verging-key K        valid verging key (default test-verging-key)
  --latency-ms N         added to every request (both APIs)
  --jitter-ms N          plus a random 0..=N ms
  --rate-limit N         N requests/s per API (token bucket; 429 beyond)
  --retry-after MODE     none | seconds | date | <fixed seconds> (default none)
  --processing-ms N      verging job processing time (default 0)
  --rembg-credits N      rembg included credits (default 100000)
  --verging-credits N    verging credits (default 100000)
  --remove-bg-credits N  remove.bg credits (default 1000)
  --remove-bg-window N/S remove.bg rate window: N megapixel-images per S seconds
  --rembg-server-key K   rembg server behind a proxy wanting `Authorization: Bearer K`
  --fail-rate P          answer 503 to a fraction P (0..1) of requests
  --log FILE             append the request log as JSON lines (flushed per line)
  -h, --help             this text

Prints `listening on http://HOST:PORT` once ready; serves until killed.
";

fn parse_args(args: &[String]) -> Result<(SocketAddr, Config), String> {
    let mut cfg = Config::default();
    let mut host: IpAddr = Ipv4Addr::LOCALHOST.into();
    let mut port: u16 = 0;
    let mut rate: Option<u32> = None;
    let mut retry_after = RetryAfter::None;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            return Err(String::new());
        }
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        let num = |v: String| -> Result<u64, String> {
            v.parse::<u64>()
                .map_err(|_| format!("{flag}: '{v}' is not a number"))
        };
        match flag.as_str() {
            "--host" => {
                let v = value()?;
                host = v
                    .parse()
                    .map_err(|_| format!("--host: bad address '{v}'"))?;
            }
            "--port" => {
                let v = value()?;
                port = v.parse().map_err(|_| format!("--port: bad port '{v}'"))?;
            }
            "--key" => cfg = cfg.with_key(&value()?),
            "--rembg-key" => cfg.rembg.key = value()?,
            "--verging-key" => cfg.verging.key = value()?,
            "--latency-ms" => cfg = cfg.with_latency(Duration::from_millis(num(value()?)?)),
            "--jitter-ms" => {
                let j = Duration::from_millis(num(value()?)?);
                cfg.rembg.latency_jitter = j;
                cfg.verging.latency_jitter = j;
            }
            "--rate-limit" => rate = Some(num(value()?)? as u32),
            "--retry-after" => {
                let v = value()?;
                retry_after = match v.as_str() {
                    "none" => RetryAfter::None,
                    "seconds" => RetryAfter::Seconds,
                    "date" => RetryAfter::HttpDate,
                    n => RetryAfter::FixedSeconds(num(n.to_string())?),
                };
            }
            "--processing-ms" => {
                cfg.job_processing = Duration::from_millis(num(value()?)?);
            }
            "--rembg-credits" => {
                let n = num(value()?)?;
                cfg.rembg_credits.included = n;
                cfg.rembg_credits.remaining_included = n;
            }
            "--verging-credits" => cfg.verging_credits = num(value()?)?,
            "--remove-bg-credits" => cfg.peers.remove_bg_credits = num(value()?)? as f64,
            "--remove-bg-window" => {
                let v = value()?;
                let (n, secs) = v
                    .split_once('/')
                    .ok_or_else(|| format!("--remove-bg-window: '{v}' is not N/SECONDS"))?;
                cfg.peers.remove_bg_window = Some(MegapixelWindow {
                    limit: num(n.to_string())? as u32,
                    window: Duration::from_secs(num(secs.to_string())?),
                });
            }
            "--rembg-server-key" => cfg.rembg_server.key = value()?,
            "--fail-rate" => {
                let v = value()?;
                let p: f64 = v
                    .parse()
                    .map_err(|_| format!("--fail-rate: '{v}' is not a number"))?;
                cfg.faults
                    .push(FaultRule::always(Fault::Status(503)).probability(p));
            }
            "--log" => cfg.log_file = Some(PathBuf::from(value()?)),
            other => return Err(format!("unknown option '{other}'")),
        }
    }
    if let Some(n) = rate {
        cfg = cfg.with_rate_limit(Some(RateLimit::per_second(n).with_retry_after(retry_after)));
    }
    Ok((SocketAddr::new(host, port), cfg))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (addr, cfg) = match parse_args(&args) {
        Ok(v) => v,
        Err(e) if e.is_empty() => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("fake-provider: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let fake = match FakeProvider::try_start_on(addr, cfg) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("fake-provider: could not start on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("listening on {}", fake.base_url());
    use std::io::Write;
    let _ = std::io::stdout().flush();
    loop {
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn flags_parse() {
        let (addr, cfg) = parse_args(&args(
            "--port 9 --latency-ms 200 --rate-limit 10 --retry-after date --key K --log /tmp/x",
        ))
        .unwrap();
        assert_eq!(addr.port(), 9);
        assert_eq!(cfg.rembg.latency, Duration::from_millis(200));
        assert_eq!(cfg.verging.key, "K");
        assert_eq!(
            cfg.rembg.rate_limit,
            Some(RateLimit::per_second(10).with_retry_after(RetryAfter::HttpDate))
        );
        assert_eq!(cfg.log_file, Some(PathBuf::from("/tmp/x")));
        let (_, cfg) =
            parse_args(&args("--remove-bg-window 500/60 --remove-bg-credits 7")).unwrap();
        assert_eq!(
            cfg.peers.remove_bg_window,
            Some(MegapixelWindow {
                limit: 500,
                window: Duration::from_secs(60)
            })
        );
        assert_eq!(cfg.peers.remove_bg_credits, 7.0);
        assert!(parse_args(&args("--remove-bg-window 5")).is_err());
        assert!(parse_args(&args("--bogus")).is_err());
        assert!(parse_args(&args("--port")).is_err());
    }
}
