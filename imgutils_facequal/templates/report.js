// The deciding part of the report that imgutils_facequal.report writes: thresholds, face filters,
// near-duplicates and overrides on every image of the scores (the JSON in #decide-data), not only
// on the faces the page shows; then decisions.json for `filter --decisions`. The rule is
// imgutils_facequal.curate's (Thresholds, apply_decisions): a face counts when it is large and sure
// enough; an image is eligible with 1 to max_faces counting faces; it passes when a counting face
// (every one, with every_face) reaches the class and the quality value; of a near-duplicate group
// only the passing member with the best counting face stays; then the overrides.
(function () {
  'use strict';
  var data = JSON.parse(document.getElementById('decide-data').textContent);
  var KEPT = 0, FAILED = 1, NO_FACE = 2, FILTERED = 3, TOO_MANY = 4, BELOW = 5, DUPLICATE = 6;
  var REASONS = ['kept', 'failed', 'no face', 'face filters', 'too many faces', 'below threshold', 'near-duplicate'];
  // A column of numbers: base64 of little-endian bytes (every platform Chromium runs on is little-endian).
  function column(Kind, text) {
    var bytes = atob(text), buffer = new Uint8Array(bytes.length);
    for (var at = 0; at < bytes.length; at++) buffer[at] = bytes.charCodeAt(at);
    return new Kind(buffer.buffer);
  }
  var faceCounts = column(Int32Array, data.faces), imageCount = faceCounts.length;
  var firstFace = new Int32Array(imageCount + 1);
  for (var i = 0; i < imageCount; i++) firstFace[i + 1] = firstFace[i] + Math.max(faceCounts[i], 0);
  var rank = column(Int8Array, data.rank), quality = column(Float64Array, data.quality);
  var size = column(Float64Array, data.size), detection = column(Float64Array, data.detection);
  var groups = data.groups;
  var state = new Int8Array(imageCount), bestQuality = new Float64Array(imageCount);
  var overrides = Object.create(null);  // stored image path: 'keep' or 'reject'
  var figures = Object.create(null);  // image index: its figures on the page
  var rendered = Object.create(null);  // image index: the verdict its figures show
  var groupElements = Array.prototype.slice.call(document.querySelectorAll('.group'));
  var sectionElements = Array.prototype.slice.call(document.querySelectorAll('section.class'));
  var controls = {};
  ['min-label', 'min-quality', 'min-quality-value', 'min-face-size', 'max-faces', 'min-detection-score',
   'every-face', 'dedup', 'save', 'clear-overrides', 'open-decisions', 'decide-message'].forEach(function (id) {
    controls[id] = document.getElementById(id);
  });

  // A number field's value within [low, high] (whole, if asked), as Thresholds accepts it; empty: null.
  function numberOrNull(input, low, high, whole) {
    if (input.value.trim() === '') return null;
    var value = Number(input.value);
    if (!isFinite(value)) return null;
    return Math.min(Math.max(whole ? Math.floor(value) : value, low), high);
  }

  function thresholds() {
    var quality = numberOrNull(controls['min-quality-value'], 0, 1, false);
    return {
      min_label: controls['min-label'].value || null,
      min_quality: quality ? quality : null,
      every_face: controls['every-face'].checked,
      min_face_size: numberOrNull(controls['min-face-size'], 0, Infinity, false),
      max_faces: numberOrNull(controls['max-faces'], 1, Infinity, true),
      min_detection_score: numberOrNull(controls['min-detection-score'], 0, 1, false),
      dedup_distance: data.dedupDistance !== null && controls.dedup.checked ? data.dedupDistance : null
    };
  }

  // What the thresholds alone do to each image (state), and its best counting face's quality value.
  function decide(t) {
    var minRank = t.min_label === null ? -1 : data.classes.indexOf(t.min_label);
    var minQuality = t.min_quality, minSize = t.min_face_size, minDetection = t.min_detection_score;
    for (var image = 0; image < imageCount; image++) {
      var faces = faceCounts[image];
      if (faces < 0) { state[image] = FAILED; continue; }
      if (faces === 0) { state[image] = NO_FACE; continue; }
      var counting = 0, some = false, every = true, best = -Infinity;
      for (var face = firstFace[image]; face < firstFace[image + 1]; face++) {
        if (minSize !== null && !(size[face] >= minSize)) continue;
        if (minDetection !== null && !(detection[face] >= minDetection)) continue;
        counting++;
        var reaches = rank[face] >= minRank && (minQuality === null || quality[face] >= minQuality);
        some = some || reaches;
        every = every && reaches;
        if (quality[face] > best) best = quality[face];  // a face without a value (NaN) is never best
      }
      bestQuality[image] = best;
      if (counting === 0) state[image] = FILTERED;
      else if (t.max_faces !== null && counting > t.max_faces) state[image] = TOO_MANY;
      else state[image] = (t.every_face ? every : some) ? KEPT : BELOW;
    }
    if (t.dedup_distance === null) return;
    for (var g = 0; g < groups.length; g++) {
      var keep = -1;
      for (var m = 0; m < groups[g].length; m++) {
        var member = groups[g][m];
        if (state[member] === KEPT && (keep < 0 || bestQuality[member] > bestQuality[keep])) keep = member;
      }
      for (m = 0; m < groups[g].length; m++) {
        if (groups[g][m] !== keep && state[groups[g][m]] === KEPT) state[groups[g][m]] = DUPLICATE;
      }
    }
  }

  function kept(image) {
    var override = overrides[data.paths[image]];
    return override === undefined ? state[image] === KEPT : override === 'keep';
  }

  function show(id, value) {
    var cell = document.querySelector('[data-decided="' + id + '"]');
    if (cell) cell.textContent = value;
  }

  function update() {
    var t = thresholds();
    decide(t);
    var counts = [0, 0, 0, 0, 0, 0, 0], keptCount = 0, keptByHand = 0, rejectedByHand = 0;
    for (var image = 0; image < imageCount; image++) counts[state[image]]++;
    keptCount = counts[KEPT];
    for (var path in overrides) {
      var index = data.index[path];
      if (index === undefined) continue;
      var automatic = state[index] === KEPT;
      if (overrides[path] === 'keep' && !automatic) { keptCount++; keptByHand++; }
      if (overrides[path] === 'reject' && automatic) { keptCount--; rejectedByHand++; }
    }
    show('kept', keptCount);
    show('rejected', imageCount - keptCount);
    show('failed', counts[FAILED]);
    show('no-face', counts[NO_FACE]);
    show('face-filters', counts[FILTERED] + counts[TOO_MANY]);
    show('below', counts[BELOW]);
    show('duplicates', counts[DUPLICATE]);
    show('kept-by-hand', keptByHand);
    show('rejected-by-hand', rejectedByHand);
    var changed = false;
    for (var shown in figures) {
      var isKept = kept(shown), byHand = overrides[data.paths[shown]] !== undefined;
      var why = byHand ? (isKept ? 'kept by hand' : 'rejected by hand') : REASONS[state[shown]];
      if (rendered[shown] === why) continue;  // touch only what changed: the page stays quick with many faces
      rendered[shown] = why;
      changed = true;
      figures[shown].forEach(function (figure) {
        figure.classList.toggle('kept', isKept);
        figure.classList.toggle('rejected', !isKept);
        figure.classList.toggle('by-hand', byHand);
        figure.dataset.decision = (isKept ? 'kept' : 'rejected') + (byHand ? ' by hand' : '');
        figure.querySelector('.why').textContent = why;
      });
    }
    if (!changed) return finish();
    groupElements.forEach(function (group) {
      var members = Array.prototype.slice.call(group.querySelectorAll('figure'));
      var ordered = members.slice().sort(function (a, b) {
        return (kept(b.dataset.image) - kept(a.dataset.image)) || (a.dataset.image - b.dataset.image);
      });
      if (ordered.some(function (figure, at) { return figure !== members[at]; })) {
        ordered.forEach(function (figure) { group.appendChild(figure); });
      }
    });
    sectionElements.forEach(function (section) {
      var images = section.querySelectorAll('figure').length;
      var keptHere = section.querySelectorAll('figure.kept').length;
      var note = section.querySelector('.kept-here');
      if (note) note.textContent = keptHere + ' of the ' + images + ' shown in kept images';
    });
    finish();
  }
  function finish() {
    document.body.dataset.updates = String(++update.count);
  }
  update.count = 0;

  function flip(image) {
    var path = data.paths[image];
    var wanted = kept(image) ? 'reject' : 'keep';
    if ((wanted === 'keep') === (state[image] === KEPT)) delete overrides[path];
    else overrides[path] = wanted;
    update();
  }

  function decisions() {
    var chosen = {};
    Object.keys(overrides).sort().forEach(function (path) { chosen[path] = overrides[path]; });
    return {kind: 'imgutils-facequal decisions', version: 1,
            scores: {fingerprint: data.fingerprint, images: imageCount},
            thresholds: thresholds(), overrides: chosen};
  }

  function save() {
    var text = JSON.stringify(decisions(), null, 1) + '\n';
    var link = document.createElement('a');
    link.href = URL.createObjectURL(new Blob([text], {type: 'application/json'}));
    link.download = 'decisions.json';
    document.body.appendChild(link);
    link.click();
    setTimeout(function () { URL.revokeObjectURL(link.href); link.remove(); }, 1000);
  }

  data.index = Object.create(null);
  for (var key in data.paths) data.index[data.paths[key]] = Number(key);
  document.querySelectorAll('figure[data-image]').forEach(function (figure) {
    var image = figure.dataset.image;
    (figures[image] = figures[image] || []).push(figure);
    var button = figure.querySelector('.face');
    button.addEventListener('click', function () { flip(Number(image)); });
    button.addEventListener('keydown', function (event) {
      if (event.key === 'Enter' || event.key === ' ') { event.preventDefault(); flip(Number(image)); }
    });
  });
  // The controls set to thresholds (as Thresholds.to_dict gives them; a missing field: no condition).
  function setControls(t) {
    function text(value) { return value === null || value === undefined ? '' : String(value); }
    controls['min-label'].value = data.classes.indexOf(t.min_label) >= 0 ? t.min_label : '';
    controls['min-quality-value'].value = t.min_quality ? String(t.min_quality) : '';
    controls['min-quality'].value = t.min_quality || 0;
    controls['min-face-size'].value = text(t.min_face_size);
    controls['max-faces'].value = text(t.max_faces);
    controls['min-detection-score'].value = text(t.min_detection_score);
    controls['every-face'].checked = !!t.every_face;
    controls.dedup.checked = data.dedupDistance !== null && t.dedup_distance !== null && t.dedup_distance !== undefined;
  }

  function say(message) { controls['decide-message'].textContent = message; }

  // A decisions.json saved here before: its thresholds and overrides, if it was decided on these scores.
  function open(file) {
    file.text().then(function (text) {
      var saved;
      try { saved = JSON.parse(text); } catch (error) { return say(file.name + ' is not JSON (' + error.message + ').'); }
      if (!saved || saved.kind !== 'imgutils-facequal decisions' || saved.version !== 1) {
        return say(file.name + ' is not a decisions file of version 1; nothing changed.');
      }
      if (!saved.scores || saved.scores.fingerprint !== data.fingerprint) {
        return say(file.name + ' was decided on other scores (fingerprint ' + (saved.scores || {}).fingerprint +
                   ', these: ' + data.fingerprint + '); nothing changed.');
      }
      var t = saved.thresholds || {}, chosen = saved.overrides || {}, hidden = 0, count = 0;
      setControls(t);
      overrides = Object.create(null);
      for (var path in chosen) {
        if (chosen[path] !== 'keep' && chosen[path] !== 'reject') continue;
        overrides[path] = chosen[path];
        count++;
        if (data.index[path] === undefined) hidden++;
      }
      update();
      var notes = [];
      if (hidden) notes.push(hidden + ' of them on images this page does not show (saved again, not counted)');
      if (t.dedup_distance && data.dedupDistance !== null && t.dedup_distance !== data.dedupDistance) {
        notes.push('decided at ' + t.dedup_distance + ' bits, this report groups within ' + data.dedupDistance);
      }
      say('Opened ' + file.name + ': ' + count + ' overrides' + (notes.length ? '; ' + notes.join('; ') : '') + '.');
    });
  }

  setControls(data.thresholds);
  controls.dedup.disabled = data.dedupDistance === null;
  ['min-label', 'min-quality-value', 'min-face-size', 'max-faces', 'min-detection-score', 'every-face', 'dedup']
    .forEach(function (id) { controls[id].addEventListener('input', update); });
  controls['min-quality'].addEventListener('input', function () {
    controls['min-quality-value'].value = Number(controls['min-quality'].value) > 0 ? controls['min-quality'].value : '';
    update();
  });
  controls['min-quality-value'].addEventListener('input', function () {
    controls['min-quality'].value = controls['min-quality-value'].value || 0;
  });
  controls['open-decisions'].addEventListener('change', function () {
    if (this.files.length) open(this.files[0]);
    this.value = '';
  });
  controls.save.addEventListener('click', save);
  controls['clear-overrides'].addEventListener('click', function () {
    overrides = Object.create(null);
    update();
  });
  window.reportDecisions = decisions;
  update();
})();
