import Mustache

/// The pages, as Mustache templates compiled into the binary (no resource files to find at
/// run time). `{{name}}` escapes HTML, so job arguments, error messages, queue and process
/// names (all user data) never reach the page as markup; the one raw `{{{chart}}}` is SVG this
/// module draws from numbers and dates.
enum Templates {
    static func library() throws -> MustacheLibrary {
        var library = MustacheLibrary()
        for (name, text) in [("layout", layout), ("paging", paging), ("dashboard", dashboard), ("busy", busy),
                             ("queues", queues), ("queue", queue), ("jobset", jobset)] {
            try library.register(text, named: name)
        }
        return library
    }

    static let layout = """
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>{{title}} · Damselfly Jobs</title>
        <link rel="stylesheet" href="{{root}}assets/app.css">
        <script src="{{root}}assets/app.js" defer></script>
        </head>
        <body data-root="{{root}}" data-poll="{{poll}}">
        <nav>
        <a class="brand" href="{{root}}">Damselfly Jobs</a>
        {{#tabs}}<a href="{{root}}{{path}}" id="tab-{{path}}"{{#active}} class="active"{{/active}}>{{name}}</a>{{/tabs}}
        <span class="redis">{{redisURL}}</span>
        </nav>
        <section class="summary">
        {{#summary}}<a class="stat" href="{{root}}{{path}}"><span class="count" id="stat-{{id}}">{{value}}</span><span class="label">{{name}}</span></a>{{/summary}}
        </section>
        <main>
        {{$content}}{{/content}}
        </main>
        <footer>Damselfly Jobs · Redis {{redisURL}} · {{now}} UTC</footer>
        </body>
        </html>
        """

    static let paging = """
        {{#paging}}<div class="paging">
        {{#prev}}<a href="{{link}}" class="prev">&larr; Previous</a>{{/prev}}
        <span>Page {{current}} of {{pages}} ({{total}})</span>
        {{#next}}<a href="{{link}}" class="next">Next &rarr;</a>{{/next}}
        </div>{{/paging}}
        """

    static let dashboard = """
        {{<layout}}{{$content}}
        <h2>Dashboard</h2>
        <div class="history">
        <h3>History</h3>
        <p class="ranges">{{#ranges}}<a href="{{root}}?days={{days}}"{{#active}} class="active"{{/active}}>{{label}}</a> {{/ranges}}</p>
        {{{chart}}}
        <p class="legend"><span class="processed">&#9632; Processed</span> <span class="failed">&#9632; Failed</span> over the last {{days}} days</p>
        </div>
        <h3>Server</h3>
        <table class="info" id="redis-info">
        {{#info}}<tr><th>{{name}}</th><td id="info-{{key}}">{{value}}</td></tr>{{/info}}
        </table>
        {{/content}}{{/layout}}
        """

    static let busy = """
        {{<layout}}{{$content}}
        <h2>Processes</h2>
        <form method="post" action="{{root}}busy" class="actions">
        <input type="hidden" name="authenticity_token" value="{{csrf}}">
        <button name="quiet" value="1">Quiet All</button>
        <button name="stop" value="1" class="danger">Stop All</button>
        </form>
        <table id="processes">
        <thead><tr><th>Name</th><th>Started</th><th>Threads</th><th>Busy</th><th>Last beat</th><th></th></tr></thead>
        <tbody>
        {{#processes}}<tr class="process">
        <td><strong>{{name}}</strong>{{#tag}} <span class="tag">{{tag}}</span>{{/tag}}{{#quiet}} <span class="tag quiet">quiet</span>{{/quiet}}<br><small>{{queues}}</small></td>
        <td><time title="{{startedISO}}">{{startedAgo}}</time></td><td>{{concurrency}}</td><td>{{busy}}</td><td>{{beatAgo}}</td>
        <td><form method="post" action="{{root}}busy">
        <input type="hidden" name="authenticity_token" value="{{csrf}}"><input type="hidden" name="identity" value="{{identity}}">
        {{^quiet}}<button name="quiet" value="1">Quiet</button>{{/quiet}}
        <button name="stop" value="1" class="danger">Stop</button>
        </form></td></tr>
        {{/processes}}
        {{^processes}}<tr><td colspan="6">No processes.</td></tr>{{/processes}}
        </tbody></table>
        <h2>Jobs running</h2>
        <table id="workers">
        <thead><tr><th>Process</th><th>Thread</th><th>Queue</th><th>Job</th><th>Arguments</th><th>Started</th></tr></thead>
        <tbody>
        {{#workers}}<tr><td>{{process}}</td><td>{{tid}}</td><td><a href="{{root}}queues/{{queueURL}}">{{queue}}</a></td><td>{{class}}</td><td><code>{{args}}</code></td><td>{{runAgo}}</td></tr>{{/workers}}
        {{^workers}}<tr><td colspan="6">Nothing running.</td></tr>{{/workers}}
        </tbody></table>
        {{/content}}{{/layout}}
        """

    static let queues = """
        {{<layout}}{{$content}}
        <h2>Queues</h2>
        <table id="queues">
        <thead><tr><th>Queue</th><th>Size</th><th>Latency</th><th></th></tr></thead>
        <tbody>
        {{#queues}}<tr><td><a href="{{root}}queues/{{nameURL}}">{{name}}</a></td><td class="size">{{size}}</td><td>{{latency}}</td>
        <td><form method="post" action="{{root}}queues/{{nameURL}}" data-confirm="Delete every job in {{name}}?">
        <input type="hidden" name="authenticity_token" value="{{csrf}}"><button class="danger">Delete</button></form></td></tr>{{/queues}}
        {{^queues}}<tr><td colspan="4">No queues.</td></tr>{{/queues}}
        </tbody></table>
        {{/content}}{{/layout}}
        """

    static let queue = """
        {{<layout}}{{$content}}
        <header class="page"><h2>Queue {{name}}</h2>
        <p><a href="{{root}}queues/{{nameURL}}?direction={{otherDirection}}">{{otherDirectionLabel}}</a></p>
        {{> paging}}</header>
        <table id="jobs">
        <thead><tr><th>Job</th><th>Arguments</th><th>Enqueued</th><th>JID</th><th></th></tr></thead>
        <tbody>
        {{#entries}}<tr class="job"><td>{{class}}</td><td><code>{{args}}</code></td><td>{{enqueuedAgo}}</td><td>{{jid}}</td>
        <td><form method="post" action="{{root}}queues/{{nameURL}}/delete">
        <input type="hidden" name="authenticity_token" value="{{csrf}}"><input type="hidden" name="key_val" value="{{value}}">
        <button class="danger">Delete</button></form></td></tr>{{/entries}}
        {{^entries}}<tr><td colspan="5">No jobs.</td></tr>{{/entries}}
        </tbody></table>
        {{/content}}{{/layout}}
        """

    /// Retries, Scheduled and Dead: one page, the buttons each set allows.
    static let jobset = """
        {{<layout}}{{$content}}
        <header class="page"><h2>{{heading}}</h2>
        <form method="get" action="{{root}}{{path}}" class="filter">
        <input type="search" name="substr" value="{{substr}}" placeholder="Filter by class, args, error…"><button>Filter</button>
        {{#filtered}}<a href="{{root}}{{path}}">Clear</a>{{/filtered}}
        </form>
        {{> paging}}</header>
        <form method="post" action="{{root}}{{path}}" id="bulk">
        <input type="hidden" name="authenticity_token" value="{{csrf}}">
        <table id="entries">
        <thead><tr><th><input type="checkbox" class="check-all" title="Select all"></th><th>{{whenLabel}}</th>
        {{#showRetryCount}}<th>Retries</th>{{/showRetryCount}}<th>Queue</th><th>Job</th><th>Arguments</th>{{#showError}}<th>Error</th>{{/showError}}<th></th></tr></thead>
        <tbody>
        {{#entries}}<tr class="entry" data-jid="{{jid}}">
        <td><input type="checkbox" name="key" value="{{key}}"></td>
        <td><time title="{{whenISO}}">{{whenAgo}}</time></td>
        {{#showRetryCount}}<td>{{retryCount}}</td>{{/showRetryCount}}
        <td><a href="{{root}}queues/{{queueURL}}">{{queue}}</a></td><td>{{class}}</td><td><code>{{args}}</code></td>
        {{#showError}}<td class="error">{{errorClass}}: {{errorMessage}}</td>{{/showError}}
        <td class="row-actions">
        {{#canRetry}}<button name="retry" value="1" formaction="{{root}}{{path}}/{{keyURL}}" class="retry-one">Retry now</button>{{/canRetry}}
        {{#canAddToQueue}}<button name="add_to_queue" value="1" formaction="{{root}}{{path}}/{{keyURL}}" class="enqueue-one">Add to queue</button>{{/canAddToQueue}}
        {{#canKill}}<button name="kill" value="1" formaction="{{root}}{{path}}/{{keyURL}}" class="kill-one">Kill</button>{{/canKill}}
        <button name="delete" value="1" formaction="{{root}}{{path}}/{{keyURL}}" class="danger delete-one">Delete</button>
        </td></tr>
        {{/entries}}
        {{^entries}}<tr><td colspan="8">No jobs.</td></tr>{{/entries}}
        </tbody></table>
        <p class="actions">Selected:
        {{#canRetry}}<button name="retry" value="1" id="bulk-retry">Retry now</button>{{/canRetry}}
        {{#canAddToQueue}}<button name="add_to_queue" value="1" id="bulk-enqueue">Add to queue</button>{{/canAddToQueue}}
        {{#canKill}}<button name="kill" value="1" id="bulk-kill">Kill</button>{{/canKill}}
        <button name="delete" value="1" class="danger" id="bulk-delete">Delete</button>
        </p>
        </form>
        {{#hasAllActions}}<p class="actions">All:
        {{#allActions}}<form method="post" action="{{root}}{{path}}/all/{{action}}" class="inline" data-confirm="{{label}}: every job in {{heading}}?">
        <input type="hidden" name="authenticity_token" value="{{csrf}}"><button id="all-{{action}}"{{#danger}} class="danger"{{/danger}}>{{label}}</button></form>
        {{/allActions}}</p>{{/hasAllActions}}
        {{/content}}{{/layout}}
        """

    static let css = """
        body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#222;background:#fafafa}
        nav{background:#7a1f3d;padding:.6em 1em;display:flex;gap:1em;align-items:center}
        nav a{color:#f4dce5;text-decoration:none}nav a.active,nav a:hover{color:#fff;font-weight:600}
        nav .brand{color:#fff;font-weight:700;margin-right:1em}nav .redis{margin-left:auto;color:#e6bccb;font-size:12px}
        .summary{display:flex;flex-wrap:wrap;background:#fff;border-bottom:1px solid #ddd}
        .stat{flex:1;text-align:center;padding:.6em;color:#222;text-decoration:none;border-right:1px solid #eee}
        .stat .count{display:block;font-size:20px;font-weight:600;color:#7a1f3d}.stat .label{font-size:12px;color:#666}
        main{padding:1em 1.5em}h2{margin:.3em 0 .6em}
        table{border-collapse:collapse;width:100%;background:#fff;margin-bottom:1em}
        th,td{border:1px solid #e3e3e3;padding:.35em .5em;text-align:left;vertical-align:top}th{background:#f2f2f2}
        code{font-size:12px;word-break:break-all}td.error{color:#a00}
        button{background:#fff;border:1px solid #999;border-radius:3px;padding:.2em .7em;cursor:pointer}
        button.danger{border-color:#b33;color:#b33}.inline{display:inline}
        .paging{margin:.5em 0}.paging a{margin:0 .5em}.tag{background:#eee;border-radius:3px;padding:0 .4em;font-size:12px}
        .tag.quiet{background:#f6d365}.filter{margin:.5em 0}.ranges a.active{font-weight:700}
        .legend .processed{color:#2b7a3d}.legend .failed{color:#b33}footer{color:#888;font-size:12px;padding:1em 1.5em}
        """

    /// Polls `stats` and updates the summary counters; selects all rows; asks before the
    /// forms marked `data-confirm`. No framework: a few lines the CSP lets run from 'self'.
    static let js = """
        (function () {
          var body = document.body, root = body.dataset.root, poll = parseInt(body.dataset.poll || "0", 10);
          function refresh() {
            fetch(root + "stats", {credentials: "same-origin"}).then(function (r) { return r.json(); }).then(function (s) {
              Object.keys(s.sidekiq).forEach(function (k) {
                var el = document.getElementById("stat-" + k);
                if (el) { el.textContent = Number(s.sidekiq[k]).toLocaleString("en-US"); }
              });
            }).catch(function () {});
          }
          if (poll > 0) { setInterval(refresh, poll * 1000); }
          document.querySelectorAll("input.check-all").forEach(function (box) {
            box.addEventListener("change", function () {
              document.querySelectorAll("input[name=key]").forEach(function (b) { b.checked = box.checked; });
            });
          });
          document.querySelectorAll("form[data-confirm]").forEach(function (f) {
            f.addEventListener("submit", function (e) { if (!window.confirm(f.dataset.confirm)) { e.preventDefault(); } });
          });
        })();
        """
}
