// The HTML of the front page: plain template strings, every value escaped.
export function escapeHtml(value) {
  return String(value ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

function formatSize(bytes) {
  const n = Number(bytes);
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

export function layout(title, body) {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<link rel="stylesheet" href="/static/style.css">
</head>
<body>
<main>
${body}
</main>
</body>
</html>
`;
}

export function indexPage({ config, storage, uploads, notice, maxUploadBytes }) {
  const rows = uploads
    ? uploads
        .map(
          (u) => `      <li><a href="${escapeHtml(storage.url(u.name))}">${escapeHtml(u.original_name)}</a>
        <span class="meta">${escapeHtml(formatSize(u.size))} · ${escapeHtml(u.content_type)} · ${escapeHtml(new Date(u.created_at).toISOString().replace('T', ' ').slice(0, 19))} UTC</span></li>`,
        )
        .join('\n')
    : '';
  const list = !uploads
    ? ''
    : uploads.length === 0
      ? '<p class="empty">No files yet: upload the first one below.</p>'
      : `<ul class="uploads">\n${rows}\n    </ul>`;
  return layout(
    `${config.appName} (${config.stage})`,
    `<header>
  <h1>${escapeHtml(config.appName)}</h1>
  <p><span class="stage stage-${escapeHtml(config.stage)}">${escapeHtml(config.stage)}</span>
     Express on Node ${escapeHtml(process.versions.node)} · debug ${config.debug ? 'on' : 'off'}</p>
</header>
${notice ? `<p class="notice">${escapeHtml(notice)}</p>` : ''}
<section>
  <h2>Media</h2>
  <p class="meta">Stored as ${escapeHtml(storage.description)}.</p>
  ${list}
</section>
<section>
  <h2>Upload a file</h2>
  <form method="post" action="/upload" enctype="multipart/form-data">
    <input type="file" name="file" required>
    <button type="submit">Upload</button>
  </form>
  <p class="meta">Up to ${escapeHtml(formatSize(maxUploadBytes))}.</p>
</section>
<footer class="meta">Health: <a href="/healthz">/healthz</a> · ${escapeHtml(config.siteUrl)}</footer>`,
  );
}

export function errorPage(status, message, detail) {
  return layout(
    `${status}`,
    `<h1>${escapeHtml(status)}</h1>
<p>${escapeHtml(message)}</p>
${detail ? `<pre>${escapeHtml(detail)}</pre>` : ''}
<p><a href="/">Back</a></p>`,
  );
}
